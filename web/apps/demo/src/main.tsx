// The demo page's entry: /?user=alice signs in as alice at once.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.js';
import './app.css';

const user = new URLSearchParams(location.search).get('user') ?? '';
createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App initialUser={user} />
  </StrictMode>,
);
