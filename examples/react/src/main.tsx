// Renders the screen before (?v=before) or after (default) the migration.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App as After } from './after/App';
import { App as Before } from './before/App';

const before = new URLSearchParams(location.search).get('v') === 'before';
const root = document.getElementById('root');
if (!root) throw new Error('no #root element');
createRoot(root).render(<StrictMode>{before ? <Before /> : <After />}</StrictMode>);
