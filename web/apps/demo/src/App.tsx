// Sign-in, then the demo inside one HeraldProvider for the signed-in user.
import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { HeraldProvider, type HeraldProviderProps, type TokenReason } from '@herald/react';
import { USER_PATTERN, demoToken, tokenSource } from './api.js';
import { Demo } from './Demo.js';

interface Session {
  user: string;
  getToken: (reason: TokenReason) => Promise<string>;
}

// setUserInURL keeps the user in the address, so that a reload stays signed in.
function setUserInURL(user: string) {
  const u = new URL(location.href);
  if (user) u.searchParams.set('user', user);
  else u.searchParams.delete('user');
  history.replaceState(null, '', u);
}

export interface AppProps {
  /** From ?user=: signs in at once. */
  initialUser: string;
  /** For tests: the fetch of the token requests, and options of the provider (its own fetch, share...). */
  fetch?: typeof fetch;
  options?: Partial<HeraldProviderProps>;
}

export function App({ initialUser, fetch: f = (...a) => fetch(...a), options }: AppProps) {
  const [session, setSession] = useState<Session | null>(null);
  const [pending, setPending] = useState(initialUser ? initialUser.toLowerCase() : '');
  const [error, setError] = useState('');
  const attempt = useRef(0);

  const signIn = async (name: string) => {
    const n = ++attempt.current;
    setPending(name);
    setError('');
    try {
      const tok = await demoToken(name, f);
      if (n !== attempt.current) return;
      setUserInURL(tok.user);
      setSession({ user: tok.user, getToken: tokenSource(tok, f) });
    } catch (err) {
      if (n !== attempt.current) return;
      setError((err as Error).message);
    } finally {
      if (n === attempt.current) setPending('');
    }
  };

  // /?user=alice: sign in at once (a second run of this effect under
  // StrictMode supersedes the first, whose answer is then ignored).
  useEffect(() => {
    const name = initialUser.toLowerCase();
    if (USER_PATTERN.test(name)) void signIn(name);
    else if (initialUser) {
      setPending('');
      setError(`"${initialUser}" is not a demo user name: use 1 to 32 of a-z, 0-9, _ and -.`);
    }
  }, [initialUser]); // eslint-disable-line react-hooks/exhaustive-deps

  const signOut = () => {
    attempt.current++;
    setUserInURL('');
    setSession(null);
  };

  if (session) {
    return (
      <HeraldProvider key={session.user} url="" user={session.user} topics={['rooms/lobby']} getToken={session.getToken} {...options}>
        <Demo me={session.user} onSignOut={signOut} />
      </HeraldProvider>
    );
  }
  return <SignIn pending={pending} error={error} initial={initialUser.toLowerCase()} onSignIn={(name) => void signIn(name)} />;
}

function SignIn({ pending, error, initial, onSignIn }: { pending: string; error: string; initial: string; onSignIn: (name: string) => void }) {
  const [name, setName] = useState(initial);
  const [invalid, setInvalid] = useState('');
  const id = useId();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (pending) return; // aria-disabled: the button keeps the focus, the click does nothing
    const n = name.trim().toLowerCase();
    if (!USER_PATTERN.test(n)) {
      setInvalid('Use 1 to 32 of a-z, 0-9, _ and -.');
      return;
    }
    setInvalid('');
    onSignIn(n);
  };
  const message = invalid || error;
  return (
    <main className="signin">
      <h1>Herald demo</h1>
      <p className="lead">Real-time notifications over server-sent events. Pick a name, then open another window with another name to talk to yourself.</p>
      <form onSubmit={submit} className="card" noValidate>
        <label htmlFor={id + 'name'}>Your name</label>
        <input
          id={id + 'name'}
          data-testid="user-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          autoComplete="username"
          autoCapitalize="none"
          spellCheck={false}
          maxLength={32}
          placeholder="alice"
          aria-invalid={!!invalid}
          aria-describedby={id + 'msg'}
          autoFocus
        />
        <button type="submit" data-testid="sign-in" aria-disabled={!!pending}>
          {pending ? 'Signing in…' : 'Sign in'}
        </button>
        <p id={id + 'msg'} className={message ? 'error' : 'hint'} role={message ? 'alert' : undefined}>
          {message || (pending ? `Signing in as ${pending}…` : 'Letters, digits, _ and -. No password: this is a demo.')}
        </p>
      </form>
    </main>
  );
}
