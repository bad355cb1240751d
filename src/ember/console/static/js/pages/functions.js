import { html } from '../lib.js';
import { Page } from '../ui.js';

export default function Functions() {
  return html`<${Page} title="Functions"><p>To be built.</p><//>`;
}
