import { html } from '../lib.js';
import { Page } from '../ui.js';

export default function FunctionPage() {
  return html`<${Page} title="FunctionPage"><p>To be built.</p><//>`;
}
