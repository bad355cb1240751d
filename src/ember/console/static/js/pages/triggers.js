import { html } from '../lib.js';
import { Page } from '../ui.js';

export default function Triggers() {
  return html`<${Page} title="Triggers"><p>To be built.</p><//>`;
}
