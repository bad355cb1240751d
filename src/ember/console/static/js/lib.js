// The one place that names the vendored libraries' files (see ../vendor/README.md).
export {
  html, render, useState, useEffect, useRef, useMemo, useCallback, useErrorBoundary,
  createContext, useContext,
} from '../vendor/preact-htm-3.1.1.mjs';
export { default as uPlot } from '../vendor/uplot-1.6.32.esm.js';
