import { html } from '../lib.js';
import { Page } from '../ui.js';

export function Workflows() { return html`<${Page} title="Workflows"><p>To be built.</p><//>`; }
export function WorkflowPage() { return html`<${Page} title="Workflow"><p>To be built.</p><//>`; }
export function ExecutionPage() { return html`<${Page} title="Execution"><p>To be built.</p><//>`; }
