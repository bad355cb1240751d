import { html } from '../lib.js';
import { Page } from '../ui.js';

export default function Overview() {
  return html`<${Page} title="Overview"><p>To be built.</p><//>`;
}
