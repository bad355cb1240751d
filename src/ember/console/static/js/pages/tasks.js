import { html } from '../lib.js';
import { Page } from '../ui.js';

export default function Tasks() {
  return html`<${Page} title="Tasks"><p>To be built.</p><//>`;
}
