/**
 * Fault under load: the signing key rotated while traffic flows (the auth-service's rotate-key
 * command, `auth-service/scripts/rotate-key.ts`, run against the stack's database).
 *
 * The load alternates between the token issued before the rotation and the newest token a
 * client keeps refreshing (so tokens signed with the new `kid` are used the moment they exist),
 * through the edge (ext_authz) and at orders directly (the service's own JWKS cache).
 *
 * Asserted (the design guarantees it: old keys stay in the JWKS for the overlap window, a
 * verifier refetches the JWKS once on an unknown `kid`): zero rejected valid tokens, tokens of
 * both kids used.
 *
 * Second phase, printed and not asserted: the same rotation while an attacker sends tokens with
 * random `kid`s. Each verifier refetches the JWKS at most once per cooldown (5 s), so random kids
 * cannot cause a fetch storm; the price is that a token with the genuinely new `kid` arriving
 * inside a cooldown opened by the attacker is rejected until the cooldown ends.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { main as rotateKey } from '../../auth-service/scripts/rotate-key.js';
import { startTestStack } from './lib/stack.js';
import { figures, markdownTable, phaseRow, startLoad, type LoadRecord } from './lib/load.js';
import { callChain, login, refresh, type Tokens } from './lib/mesh.js';

t.setTimeout(180_000);

const RATE = 30;
const PHASE_SEC = 16;

const kidOf = (jwt: string): string => (JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid: string }).kid;

/** A client that refreshes every `everyMs` and always holds the newest access token. */
function refresher(state: Parameters<typeof refresh>[0], first: Tokens, everyMs: number) {
  let current = first;
  let stopped = false;
  let failures = 0;
  const loop = (async () => {
    while (!stopped) {
      await sleep(everyMs);
      const r = await refresh(state, current.refresh_token);
      if (r.status === 200) current = JSON.parse(r.body) as Tokens;
      else failures++;
    }
  })();
  return {
    get token() {
      return current.access_token;
    },
    get failures() {
      return failures;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** A token with a random `kid`, signed by the attacker's own key. */
function randomKidToken(issuer: string, audience: string): string {
  const { privateKey } = attackerKey;
  const now = Math.floor(Date.now() / 1000);
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'RS256', typ: 'at+jwt', kid: `rnd-${Math.random().toString(36).slice(2)}` })}.${enc({ iss: issuer, aud: audience, sub: 'mallory', jti: `j-${now}-${Math.random()}`, iat: now, exp: now + 60, scope: 'orders:read' })}`;
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}
const attackerKey = generateKeyPairSync('rsa', { modulusLength: 2048 });

t.test('signing key rotated under load: zero rejected valid tokens', async (t) => {
  const { state, databaseUrl } = await startTestStack(t, {
    label: 'rotation',
    stack: { env: { auth: { REFRESH_RATE_LIMIT_PER_MIN: '100000', LOGIN_RATE_LIMIT_PER_MIN: '100000', LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '100000' } } },
  });
  const ordersApp = state.urls.services['orders']?.app as string;
  const rotate = async () => {
    const out: string[] = [];
    const code = await rotateKey([], { DATABASE_URL: databaseUrl }, (l) => out.push(l));
    if (code !== 0) throw new Error(`rotate-key exited ${code}: ${out.join('\n')}`);
    return out[0] ?? '';
  };

  const runPhase = async (name: string, opts: { noise: boolean }) => {
    const old = await login(state);
    const oldKid = kidOf(old.access_token);
    const client = refresher(state, await login(state), 250);
    let noiseSent = 0;
    const load = startLoad({
      ratePerSec: RATE,
      durationSec: PHASE_SEC,
      send: async (seq, signal) => {
        const useNew = seq % 2 === 1;
        const token = useNew ? client.token : old.access_token;
        const base = seq % 4 >= 2 ? ordersApp : state.urls.edge;
        const a = await callChain(state, token, { base, signal });
        return { ...a, tag: `${kidOf(token) === oldKid ? 'old kid' : 'new kid'} ${base === ordersApp ? 'orders directly' : 'edge'}` };
      },
    });
    let noise: Promise<void> | undefined;
    let stopNoise = false;
    if (opts.noise) {
      noise = (async () => {
        while (!stopNoise) {
          const forged = randomKidToken(state.jwt.issuer, state.jwt.audience);
          await Promise.all([callChain(state, forged), callChain(state, forged, { base: ordersApp })]);
          noiseSent += 2;
          await sleep(100);
        }
      })();
    }
    await sleep(4000);
    const rotateAt = load.now();
    const line = await rotate();
    t.comment(`${name}: ${line}`);
    // The new key signs once the auth-service reloads its keys (KEY_RELOAD_INTERVAL_SEC, 5 s).
    let newKidAt: number | null = null;
    while (load.now() < (PHASE_SEC - 1) * 1000) {
      if (kidOf(client.token) !== oldKid) {
        newKidAt ??= load.now();
      }
      await sleep(100);
    }
    await load.done;
    stopNoise = true;
    await noise;
    await client.stop();
    const byTag = new Map<string, LoadRecord[]>();
    for (const r of load.records) byTag.set(r.tag ?? '', [...(byTag.get(r.tag ?? '') ?? []), r]);
    const rows = [
      phaseRow('before the rotation', figures(load.records, 0, rotateAt)),
      phaseRow('after it', figures(load.records, rotateAt)),
      ...[...byTag.keys()].sort().map((tag) => phaseRow(`  ${tag}`, figures(byTag.get(tag) ?? []))),
      phaseRow(`whole phase (${RATE}/s for ${PHASE_SEC} s)`, figures(load.records)),
    ];
    t.comment(
      `\n${name}${opts.noise ? ` (attacker: ${noiseSent} tokens with random kids)` : ''}; new kid first used ${newKidAt === null ? 'NEVER' : `${Math.round(newKidAt - rotateAt)} ms after the rotation`}; refresh failures ${client.failures}\n${markdownTable(rows)}`,
    );
    const firstReject = load.records.find((r) => !r.ok);
    if (firstReject) t.comment(`first rejection: ${firstReject.tag} ${firstReject.status ?? firstReject.error} ${firstReject.detail ?? ''}`);
    return { all: figures(load.records), byTag, newKidAt };
  };

  const quiet = await runPhase('rotation under load', { noise: false });
  t.not(quiet.newKidAt, null, 'tokens signed with the new kid were issued and used');
  t.ok((quiet.byTag.get('new kid edge')?.length ?? 0) > 0 && (quiet.byTag.get('new kid orders directly')?.length ?? 0) > 0, 'new-kid tokens went to the edge and to orders directly');
  t.ok((quiet.byTag.get('old kid edge')?.length ?? 0) > 0, 'old-kid tokens were used after the rotation too');
  t.same(quiet.all.failedBy, {}, 'zero rejected valid tokens');

  const noisy = await runPhase('rotation under load with random-kid noise', { noise: true });
  t.equal(noisy.all.failedBy['500'] ?? 0, 0, 'never a 500, even with random kids');
  t.comment(`valid tokens rejected during the rotation with random-kid noise: ${noisy.all.failed} (printed, not asserted: see the file comment)`);
});
