/** The steps of the issuer: the auth-service and its sidecar, then the demo users. */
import { join } from 'node:path';
import { JWKS_PATH, sidecarFileName } from '@jwt-mesh/envoy';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { seedUsers } from '../users.js';
import { StackStartError } from './launcher.js';
import { authPorts, authUrl, childEnv, httpReady, issuerOf, nodePart, type Wiring } from './node.js';
import { envoyPart } from './envoy.js';

/** Step: the auth-service, then its sidecar: the edge and every verifier reach it only through the sidecar (mTLS). */
export async function startAuth(w: Wiring): Promise<void> {
  const authDir = join(REPO_ROOT, 'auth-service');
  const ports = () => authPorts(w.plan);
  await w.launch(
    nodePart(w, {
      name: 'auth',
      entry: join(authDir, 'src', 'main.ts'),
      cwd: authDir,
      env: () =>
        childEnv(
          w,
          {
            PORT: String(ports().app),
            HOST: '127.0.0.1',
            DATABASE_URL: w.databaseUrl,
            // The issuer's Redis user (the verifiers' one comes from verifierEnv).
            ...(w.redis.acl ? { REDIS_USERNAME: w.redis.acl.issuer.username, REDIS_PASSWORD_FILE: w.redis.acl.issuer.passwordFile } : {}),
            // The edge on loopback appends the client's address to x-forwarded-for.
            TRUST_PROXY: 'loopback',
          },
          w.options.env?.auth,
        ),
      ready: httpReady(w, 'auth-service /readyz', () => `${authUrl(w.plan)}/readyz`),
      ports: () => [ports().app],
      repick: async () => {
        ports().app = await w.reserve('auth');
      },
    }),
  );
  w.say('auth', `${authUrl(w.plan)} ready (issuer ${issuerOf(w.plan)}; log ${w.rel(w.logOf('auth'))})`);
  await w.launch(envoyPart(w, 'sidecar-auth', sidecarFileName('auth'), () => [ports().inbound, ports().outbound, ports().admin]));
  w.say('sidecar-auth', `mTLS inbound https://127.0.0.1:${ports().inbound} (callers: the edge; verifiers for ${JWKS_PATH} only)`);
}

/** Step: the demo users, through the auth-service. @throws StackStartError (`users`, with the auth-service's log). */
export async function seedDemoUsers(w: Wiring): Promise<void> {
  try {
    await seedUsers(authUrl(w.plan), w.databaseUrl, w.users);
  } catch (err) {
    throw new StackStartError('users', (err as Error).message, w.logOf('auth'), { cause: err });
  }
  w.say('users', w.users.map((u) => `${u.username} (${u.scopes.join(' ')})`).join(', '));
}
