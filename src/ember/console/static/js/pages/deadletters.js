import { html } from '../lib.js';
import { Page } from '../ui.js';

export default function DeadLetters() {
  return html`<${Page} title="DeadLetters"><p>To be built.</p><//>`;
}
