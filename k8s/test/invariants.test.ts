/**
 * Every invariant of k8s/src/invariants.ts, first on the real kind overlay (no violation), then on
 * deliberately broken copies of it: each break must be reported by its rule, naming the object.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parseDockerfiles, repoContext } from '../src/context.js';
import {
  checkEnvoyMounts,
  checkImages,
  checkInvariants,
  checkJwksTls,
  checkNetworkPolicies,
  checkPorts,
  checkProbes,
  checkRedisCredentials,
  checkReferences,
  checkResources,
  checkSecurityContext,
  checkSidecars,
  checkTracing,
  connectionAllowed,
  dockerfileProblems,
  parseQuantity,
  RULES,
  type CheckContext,
  type Violation,
} from '../src/invariants.js';
import { podTemplates, type K8sObject } from '../src/manifests.js';
import { container, editEnvoyConfig, find, messages, overlayObjects, podSpec } from './helpers.js';

const ctx: CheckContext = await repoContext();

/** Asserts that `violations` has one of `rule` whose text matches `pattern`. */
function reports(t: Test, violations: Violation[], rule: string, pattern: RegExp): void {
  const hit = violations.filter((v) => v.rule === rule).map((v) => messages([v])[0] as string);
  t.ok(hit.some((m) => pattern.test(m)), `${rule} reports ${pattern}`, { found: messages(violations) });
}

t.test('the kind, minikube, cert-manager and tracing overlays hold every invariant', async (t) => {
  for (const overlay of ['kind', 'minikube', 'kind-cert-manager', 'kind-tracing'] as const) {
    const violations = checkInvariants(await overlayObjects(overlay), ctx);
    t.same(messages(violations), [], overlay);
  }
  t.same([...RULES].sort(), ['envoy-mounts', 'images', 'jwks-tls', 'network-policy', 'ports', 'probes', 'redis-credentials', 'references', 'resources', 'security-context', 'sidecar', 'tracing']);
});

t.test('probes: a missing readiness or liveness probe is reported; Jobs are exempt', async (t) => {
  const objects = await overlayObjects();
  delete container(find(objects, 'Deployment', 'orders'), 'app').readinessProbe;
  delete container(find(objects, 'Deployment', 'orders'), 'envoy').livenessProbe;
  delete container(find(objects, 'Deployment', 'edge'), 'envoy').readinessProbe;
  const v = checkProbes(objects);
  reports(t, v, 'probes', /Deployment\/orders \[app\]: no readinessProbe/);
  reports(t, v, 'probes', /Deployment\/orders \[envoy\]: no livenessProbe/);
  reports(t, v, 'probes', /Deployment\/edge \[envoy\]: no readinessProbe/);
  t.equal(v.length, 3);
  t.notOk(container(find(objects, 'Job', 'auth-migrate'), 'migrate').readinessProbe, 'the Job has no probe, and that is fine');
});

t.test('resources: missing requests or limits, and a request above its limit', async (t) => {
  const objects = await overlayObjects();
  delete container(find(objects, 'Deployment', 'authz'), 'authz').resources?.limits?.['memory'];
  delete container(find(objects, 'StatefulSet', 'postgres'), 'postgres').resources?.requests;
  const envoy = container(find(objects, 'Deployment', 'profile'), 'envoy');
  (envoy.resources as { requests: Record<string, string> }).requests['cpu'] = '2';
  const v = checkResources(objects);
  reports(t, v, 'resources', /Deployment\/authz \[authz\]: no memory limit/);
  reports(t, v, 'resources', /StatefulSet\/postgres \[postgres\]: no cpu request/);
  reports(t, v, 'resources', /StatefulSet\/postgres \[postgres\]: no memory request/);
  reports(t, v, 'resources', /Deployment\/profile \[envoy\]: cpu request 2 exceeds the limit 500m/);
  t.equal(parseQuantity('250m'), 0.25);
  t.equal(parseQuantity('64Mi'), 64 * 2 ** 20);
  t.equal(parseQuantity('1G'), 1e9);
  t.ok(Number.isNaN(parseQuantity('lots')));
});

t.test('security-context: each weakened field is reported, at container or pod level', async (t) => {
  const objects = await overlayObjects();
  const auth = container(find(objects, 'Deployment', 'auth'), 'auth');
  auth.securityContext = { ...auth.securityContext, readOnlyRootFilesystem: false, allowPrivilegeEscalation: true };
  const redis = container(find(objects, 'Deployment', 'redis'), 'redis');
  redis.securityContext = { ...redis.securityContext, capabilities: { drop: ['NET_RAW'], add: ['NET_ADMIN'] }, privileged: true };
  // runAsNonRoot and seccomp removed at both levels of one pod.
  const inventory = find(objects, 'Deployment', 'inventory');
  const app = container(inventory, 'app');
  delete app.securityContext?.runAsNonRoot;
  delete app.securityContext?.seccompProfile;
  delete podSpec(inventory).securityContext?.runAsNonRoot;
  delete podSpec(inventory).securityContext?.seccompProfile;
  const job = container(find(objects, 'Job', 'auth-migrate'), 'migrate');
  job.securityContext = { ...job.securityContext, runAsUser: 0 };
  const v = checkSecurityContext(objects);
  reports(t, v, 'security-context', /Deployment\/auth \[auth\]: readOnlyRootFilesystem is not true/);
  reports(t, v, 'security-context', /Deployment\/auth \[auth\]: allowPrivilegeEscalation is not false/);
  reports(t, v, 'security-context', /Deployment\/redis \[redis\]: capabilities.drop does not contain ALL/);
  reports(t, v, 'security-context', /Deployment\/redis \[redis\]: capabilities added: NET_ADMIN/);
  reports(t, v, 'security-context', /Deployment\/redis \[redis\]: privileged/);
  reports(t, v, 'security-context', /Deployment\/inventory \[app\]: runAsNonRoot is not true/);
  reports(t, v, 'security-context', /Deployment\/inventory \[app\]: seccompProfile is unset/);
  reports(t, v, 'security-context', /Job\/auth-migrate \[migrate\]: runAsUser is 0/);
  t.notOk(v.some((x) => x.object === 'Deployment/inventory' && x.container === 'envoy'), 'the sidecar keeps its own container-level settings');
});

t.test('sidecar: a service pod without its Envoy, with the wrong config or image, or reachable around it', async (t) => {
  {
    const objects = await overlayObjects();
    podSpec(find(objects, 'Deployment', 'orders')).initContainers = [];
    reports(t, checkSidecars(objects, ctx), 'sidecar', /Deployment\/orders: no Envoy sidecar container/);
  }
  {
    const objects = await overlayObjects();
    const inv = find(objects, 'ConfigMap', 'envoy-sidecar-inventory').metadata.name;
    const orders = podSpec(find(objects, 'Deployment', 'orders'));
    const vol = orders.volumes?.find((x) => x.name === 'envoy-config');
    if (vol?.configMap) vol.configMap.name = inv;
    reports(t, checkSidecars(objects, ctx), 'sidecar', /Deployment\/orders \[envoy\]: mounts ConfigMap envoy-sidecar-inventory-\w+ with node.id "sidecar-inventory"/);
  }
  {
    const objects = await overlayObjects();
    container(find(objects, 'Deployment', 'profile'), 'envoy').image = 'envoyproxy/envoy:v1.31.0';
    delete container(find(objects, 'Deployment', 'profile'), 'envoy').restartPolicy;
    const v = checkSidecars(objects, ctx);
    reports(t, v, 'sidecar', /Deployment\/profile \[envoy\]: Envoy image envoyproxy\/envoy:v1.31.0 is not envoyproxy\/envoy:v1.40.0/);
    reports(t, v, 'sidecar', /Deployment\/profile \[envoy\]: the Envoy init container is not a sidecar/);
  }
  {
    const objects = await overlayObjects();
    const app = container(find(objects, 'Deployment', 'inventory'), 'app');
    const host = app.env?.find((e) => e.name === 'HOST');
    if (host) host.value = '0.0.0.0';
    const svc = find(objects, 'Service', 'inventory');
    (svc['spec'] as { ports: Array<Record<string, unknown>> }).ports.push({ name: 'direct', port: 8080, targetPort: 'http' });
    const v = checkSidecars(objects, ctx);
    reports(t, v, 'sidecar', /Deployment\/inventory \[app\]: app listens on HOST=0.0.0.0/);
    reports(t, v, 'sidecar', /Deployment\/inventory \[app\]: Service inventory port 8080 reaches the app directly/);
  }
  {
    const objects = (await overlayObjects()).filter((o) => !(o.kind === 'Deployment' && o.metadata.name === 'profile'));
    reports(t, checkSidecars(objects, ctx), 'sidecar', /mesh service "profile" has no pod template/);
  }
});

t.test('envoy-mounts: a certificate the Envoy config reads but no volume provides', async (t) => {
  const objects = await overlayObjects();
  const envoy = container(find(objects, 'Deployment', 'orders'), 'envoy');
  envoy.volumeMounts = envoy.volumeMounts?.filter((m) => m.name !== 'mesh-cert');
  const v = checkEnvoyMounts(objects);
  reports(t, v, 'envoy-mounts', /Deployment\/orders \[envoy\]: config envoy-sidecar-orders-\w+ reads \/etc\/jwt-mesh\/certs\/orders\/tls.crt/);
  t.same(checkEnvoyMounts(await overlayObjects()), []);
});

t.test('ports: Service targetPorts, headless ports, probe ports, Envoy listeners and clusters', async (t) => {
  {
    const objects = await overlayObjects();
    const auth = find(objects, 'Service', 'auth');
    (auth['spec'] as { ports: Array<Record<string, unknown>> }).ports[0]!['targetPort'] = 'web';
    const authz = find(objects, 'Service', 'authz');
    (authz['spec'] as { ports: Array<Record<string, unknown>> }).ports[0]!['port'] = 9191;
    const redis = find(objects, 'Service', 'redis');
    (redis['spec'] as { selector: Record<string, string> }).selector = { 'app.kubernetes.io/name': 'rediss' };
    const v = checkPorts(objects);
    reports(t, v, 'ports', /Service\/auth: port mesh: targetPort web is not a container port of Deployment\/auth/);
    reports(t, v, 'ports', /Service\/authz: headless Service port 9191 differs from the container port 9000/);
    reports(t, v, 'ports', /Service\/redis: selector .* matches no pod template/);
    // The edge's STRICT_DNS cluster authz still says 9000, which the Service no longer has.
    reports(t, v, 'ports', /Deployment\/edge \[envoy\]: cluster authz -> authz.jwt-mesh.svc.cluster.local:9000: Service authz has no port 9000/);
  }
  {
    const objects = await overlayObjects();
    const authz = container(find(objects, 'Deployment', 'authz'), 'authz');
    authz.readinessProbe = { httpGet: { path: '/healthz', port: 9465 } };
    const envoy = container(find(objects, 'Deployment', 'inventory'), 'envoy');
    envoy.livenessProbe = { tcpSocket: { port: 'admin' } };
    const v = checkPorts(objects);
    reports(t, v, 'ports', /Deployment\/authz \[authz\]: readinessProbe port 9465 is not a port of this container/);
    reports(t, v, 'ports', /Deployment\/inventory \[envoy\]: livenessProbe port admin is not a port of this container/);
  }
  {
    const objects = await overlayObjects();
    // The app moves to 8081 while the sidecar still forwards to 8080.
    const app = container(find(objects, 'Deployment', 'orders'), 'app');
    app.ports = [{ name: 'http', containerPort: 8081 }];
    // A cluster to a Service that does not exist, and one outside the cluster.
    editEnvoyConfig(objects, 'envoy-edge', (c) => {
      c.static_resources.clusters.find((x: { name: string }) => x.name === 'auth').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = 'issuer.jwt-mesh.svc.cluster.local';
    });
    editEnvoyConfig(objects, 'envoy-sidecar-inventory', (c) => {
      c.static_resources.clusters.find((x: { name: string }) => x.name === 'profile').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = 'profile.example.com';
    });
    // A listener on a port the container does not declare; a declared port without a listener.
    editEnvoyConfig(objects, 'envoy-sidecar-profile', (c) => {
      c.static_resources.listeners.find((x: { name: string }) => x.name === 'inbound').address.socket_address.port_value = 8444;
    });
    // The app calls a port its sidecar does not listen on.
    const inv = container(find(objects, 'Deployment', 'inventory'), 'app');
    const upstream = inv.env?.find((e) => e.name === 'UPSTREAM_URL');
    if (upstream) upstream.value = 'http://127.0.0.1:15002';
    const v = checkPorts(objects);
    reports(t, v, 'ports', /Deployment\/inventory \[app\]: UPSTREAM_URL http:\/\/127.0.0.1:15002 is not a loopback listener of the sidecar/);
    reports(t, v, 'ports', /Deployment\/orders \[envoy\]: cluster local_app -> 127.0.0.1:8080: no other container of the pod has port 8080/);
    reports(t, v, 'ports', /Deployment\/edge \[envoy\]: cluster auth -> issuer.jwt-mesh.svc.cluster.local: no Service jwt-mesh\/issuer/);
    reports(t, v, 'ports', /Deployment\/inventory \[envoy\]: cluster profile -> profile.example.com: not a Service of this cluster/);
    reports(t, v, 'ports', /Deployment\/profile \[envoy\]: listener inbound on port 8444 is not a declared container port/);
    reports(t, v, 'ports', /Deployment\/profile \[envoy\]: container port mesh \(8443\) has no Envoy listener/);
  }
});

t.test('images: unknown, unpinned or moving images, and images without a usable Dockerfile', async (t) => {
  const objects = await overlayObjects();
  container(find(objects, 'Deployment', 'redis'), 'redis').image = 'redis:latest';
  container(find(objects, 'StatefulSet', 'postgres'), 'postgres').image = 'bitnami/postgresql:17';
  container(find(objects, 'Deployment', 'edge'), 'envoy').image = 'envoyproxy/envoy:v1.39.0';
  container(find(objects, 'Deployment', 'auth'), 'auth').image = 'jwt-mesh/auth-service';
  container(find(objects, 'Deployment', 'orders'), 'app').image = 'jwt-mesh/shipping:dev';
  const v = checkImages(objects, ctx);
  reports(t, v, 'images', /Deployment\/redis \[redis\]: image "redis:latest" uses the moving tag latest/);
  reports(t, v, 'images', /StatefulSet\/postgres \[postgres\]: image bitnami\/postgresql:17 is neither built here/);
  reports(t, v, 'images', /Deployment\/edge \[envoy\]: Envoy image envoyproxy\/envoy:v1.39.0 is not envoyproxy\/envoy:v1.40.0, the version the local stack pins/);
  reports(t, v, 'images', /Deployment\/auth \[auth\]: image "jwt-mesh\/auth-service" has no tag/);
  reports(t, v, 'images', /Deployment\/orders \[app\]: image jwt-mesh\/shipping:dev is neither built here/);

  // The Dockerfile side, with BuildKit's parser on real files.
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-dockerfile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = {
    single: 'FROM node:20-slim\nARG WORKSPACE\nUSER 1000\nCMD ["node"]\n',
    root: 'FROM node:20-slim AS build\nARG WORKSPACE\nFROM node:20-slim\nCOPY --from=build /app /app\nCMD ["node"]\n',
    named: 'FROM node:20-slim AS build\nARG WORKSPACE\nFROM node:20-slim\nUSER node\n',
    typo: 'FROM node:20-slim AS build\nARG WORKSPACE\nFROM node:20-slim\nCOPPY . .\nUSER 1000:1000\n',
    'no-arg': 'FROM node:20-slim AS build\nFROM node:20-slim\nUSER 1000:1000\n',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const parsed = await parseDockerfiles(Object.keys(files).map((f) => join(dir, f)));
  const problems = (f: string) => dockerfileProblems(parsed.get(join(dir, f))).join('; ');
  t.match(problems('single'), /not a multi-stage build/);
  t.match(problems('root'), /the final stage sets no USER/);
  t.match(problems('named'), /the final USER "node" is not numeric/);
  t.match(problems('typo'), /line 4: unknown instruction COPPY/);
  t.match(problems('no-arg'), /takes no WORKSPACE build argument/);
  t.same(dockerfileProblems(ctx.dockerfiles.get('docker/Dockerfile')), [], 'docker/Dockerfile itself is fine');

  // A table entry whose Dockerfile is missing, or whose workspace is not one.
  const broken: CheckContext = {
    ...ctx,
    builtImages: new Map([...ctx.builtImages, ['jwt-mesh/orders', { workspace: 'services/shipping', dockerfile: 'services/orders/Dockerfile' }]]),
  };
  const w = checkImages(await overlayObjects(), broken);
  reports(t, w, 'images', /image jwt-mesh\/orders: Dockerfile services\/orders\/Dockerfile does not exist/);
  reports(t, w, 'images', /image jwt-mesh\/orders: workspace services\/shipping has no package.json/);
});

t.test('references: Secrets and ConfigMaps nobody creates', async (t) => {
  const objects = await overlayObjects();
  const authz = podSpec(find(objects, 'Deployment', 'authz'));
  authz.volumes?.push({ name: 'extra', secret: { secretName: 'authz-signing-key' } });
  const app = container(find(objects, 'Deployment', 'profile'), 'app');
  app.envFrom = [...(app.envFrom ?? []), { configMapRef: { name: 'profile-settings' } }];
  const v = checkReferences(objects, ctx);
  reports(t, v, 'references', /Deployment\/authz: Secret authz-signing-key is neither in the manifests, nor created by k8s\/create-secrets.sh/);
  reports(t, v, 'references', /Deployment\/profile: ConfigMap profile-settings does not exist/);
  // Without create-secrets.sh, the base's Secrets are all missing; with cert-manager, the mesh ones are issued.
  const none = checkReferences(await overlayObjects(), { externalSecrets: [] }).map((x) => x.message);
  t.ok(none.some((m) => /Secret mesh-orders/.test(m)));
  const cm = checkReferences(await overlayObjects('kind-cert-manager'), {
    externalSecrets: ['postgres-credentials', 'redis-acl', 'redis-issuer-credentials', 'redis-verifier-credentials'],
  });
  t.same(messages(cm), [], 'the cert-manager overlay issues every mesh-* Secret');
});

t.test('network-policy: what the mesh needs is allowed, the datastores are reachable only by their clients', async (t) => {
  {
    const objects = await overlayObjects();
    const edge = find(objects, 'NetworkPolicy', 'edge');
    const spec = edge['spec'] as { egress: Array<{ to?: Array<{ podSelector?: { matchLabels?: Record<string, string> } }> }> };
    spec.egress = spec.egress.filter((r) => r.to?.[0]?.podSelector?.matchLabels?.['app.kubernetes.io/name'] !== 'orders');
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /Envoy cluster orders \(envoy-edge-\w+\): NetworkPolicies block Deployment\/edge -> Deployment\/orders port 8443/);
  }
  {
    const objects = await overlayObjects();
    const inv = find(objects, 'NetworkPolicy', 'inventory');
    (inv['spec'] as { ingress: unknown[] }).ingress = [];
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /NetworkPolicies block Deployment\/orders -> Deployment\/inventory port 8443/);
  }
  {
    const objects = await overlayObjects();
    const auth = find(objects, 'NetworkPolicy', 'auth');
    const ingress = (auth['spec'] as { ingress: Array<{ from: Array<{ podSelector: { matchLabels: Record<string, string> } }> }> }).ingress;
    ingress[0]!.from = ingress[0]!.from.filter((p) => p.podSelector.matchLabels['app.kubernetes.io/name'] !== 'profile');
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /Deployment\/profile: JWKS_URL of container app: NetworkPolicies block Deployment\/profile -> Deployment\/auth port 8443/);
  }
  {
    const objects = await overlayObjects();
    const redis = find(objects, 'NetworkPolicy', 'redis');
    const ingress = (redis['spec'] as { ingress: Array<{ from: Array<{ podSelector: { matchLabels: Record<string, string> } }> }> }).ingress;
    ingress[0]!.from = ingress[0]!.from.filter((p) => p.podSelector.matchLabels['app.kubernetes.io/name'] !== 'authz');
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /Deployment\/authz: authz needs redis:6379: NetworkPolicies block/);
  }
  {
    // An extra policy that opens PostgreSQL to the orders pods (egress and ingress).
    const objects = await overlayObjects();
    const open = (name: string, select: string, rule: Record<string, unknown>, type: string): K8sObject => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name, namespace: 'jwt-mesh' },
      spec: { podSelector: { matchLabels: { 'app.kubernetes.io/name': select } }, policyTypes: [type], [type.toLowerCase()]: [rule] },
    });
    objects.push(open('orders-to-db', 'orders', { to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'postgres' } } }] }, 'Egress'));
    objects.push(open('db-from-orders', 'postgres', { from: [{ podSelector: { matchExpressions: [{ key: 'app.kubernetes.io/component', operator: 'In', values: ['service'] }] } }] }, 'Ingress'));
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /StatefulSet\/postgres: Deployment\/orders can reach postgres:5432; only auth, auth-migrate may/);
  }
  {
    // The auth sidecar opened to a pod that is neither the edge nor a verifier (the migration Job).
    const objects = await overlayObjects();
    objects.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'migrate-to-auth', namespace: 'jwt-mesh' },
      spec: {
        podSelector: { matchLabels: { 'app.kubernetes.io/name': 'auth-migrate' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'auth' } } }] }],
      },
    });
    const auth = find(objects, 'NetworkPolicy', 'auth');
    const ingress = (auth['spec'] as { ingress: Array<{ from: Array<Record<string, unknown>> }> }).ingress;
    ingress[0]!.from.push({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'auth-migrate' } } });
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /Deployment\/auth: Job\/auth-migrate can reach auth:8443; only edge, authz, orders, inventory, profile may/);
  }
  {
    // Redis opened to the migration Job: only the issuer and the verifiers may reach it.
    const objects = await overlayObjects();
    const redis = find(objects, 'NetworkPolicy', 'redis');
    (redis['spec'] as { ingress: Array<{ from: Array<Record<string, unknown>> }> }).ingress[0]!.from.push({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'auth-migrate' } } });
    const migrate = find(objects, 'NetworkPolicy', 'auth-migrate');
    (migrate['spec'] as { egress: unknown[] }).egress.push({ to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'redis' } } }] });
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /redis: Job\/auth-migrate can reach redis:6379; only auth, authz, orders, inventory, profile may/);
  }
  {
    const objects = (await overlayObjects()).filter((o) => !(o.kind === 'NetworkPolicy' && o.metadata.name === 'default-deny'));
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /namespace jwt-mesh: no default-deny NetworkPolicy/);
  }
  {
    // The evaluator itself: default deny blocks what no policy opens; an ipBlock is never credited.
    const objects = await overlayObjects();
    const pods = podTemplates(objects);
    const pod = (n: string) => pods.find((p) => p.labels['app.kubernetes.io/name'] === n)!;
    t.ok(connectionAllowed(objects, pod('edge'), pod('authz'), 9000), 'edge -> authz:9000');
    t.notOk(connectionAllowed(objects, pod('edge'), pod('inventory'), 8443), 'edge -> inventory: the edge routes only to orders');
    t.notOk(connectionAllowed(objects, pod('orders'), pod('postgres'), 5432), 'orders -> postgres');
    t.notOk(connectionAllowed(objects, pod('authz'), pod('redis'), 6380), 'authz -> redis on another port');
    t.notOk(connectionAllowed(objects, pod('profile'), pod('orders'), 8443), 'profile -> orders: no call goes back up the chain');
    t.ok(connectionAllowed(objects, pod('edge'), pod('auth'), 8443), 'edge -> auth sidecar');
    t.notOk(connectionAllowed(objects, pod('edge'), pod('auth'), 8080), 'edge -> the auth app port: never');
    t.notOk(connectionAllowed(objects, pod('auth-migrate'), pod('auth'), 8443), 'the migration Job -> auth sidecar');
  }
});

t.test('jwks-tls: every verifier fetches the JWK Set over https, pinning the issuer, with its certificate mounted', async (t) => {
  t.same(messages(checkJwksTls(await overlayObjects(), ctx)), [], 'the kind overlay holds it');
  const setEnv = (objects: K8sObject[], deployment: string, c: string, name: string, value: string) => {
    const env = container(find(objects, 'Deployment', deployment), c).env ?? [];
    const e = env.find((x) => x.name === name);
    if (e) e.value = value;
    else env.push({ name, value });
  };
  {
    const objects = await overlayObjects();
    setEnv(objects, 'orders', 'app', 'JWKS_URL', 'http://auth:8443/.well-known/jwks.json');
    reports(t, checkJwksTls(objects, ctx), 'jwks-tls', /Deployment\/orders \[app\]: JWKS_URL http:\/\/auth:8443\/\.well-known\/jwks\.json is not https/);
  }
  {
    const objects = await overlayObjects();
    setEnv(objects, 'authz', 'authz', 'JWKS_SERVER_ID', 'spiffe://jwt-mesh.local/ns/jwt-mesh/sa/orders');
    reports(t, checkJwksTls(objects, ctx), 'jwks-tls', /Deployment\/authz \[authz\]: JWKS_SERVER_ID is spiffe:\/\/jwt-mesh\.local\/ns\/jwt-mesh\/sa\/orders, not the issuer's identity/);
  }
  {
    const objects = await overlayObjects();
    const app = container(find(objects, 'Deployment', 'profile'), 'app');
    app.volumeMounts = app.volumeMounts?.filter((m) => m.name !== 'mesh-cert');
    reports(t, checkJwksTls(objects, ctx), 'jwks-tls', /Deployment\/profile \[app\]: JWKS_CERT_FILE \/etc\/jwt-mesh\/certs\/profile\/tls\.crt lies under no volume/);
  }
  {
    const objects = await overlayObjects();
    const app = container(find(objects, 'Deployment', 'inventory'), 'app');
    app.env = app.env?.filter((e) => e.name !== 'JWKS_KEY_FILE');
    reports(t, checkJwksTls(objects, ctx), 'jwks-tls', /Deployment\/inventory \[app\]: JWKS_KEY_FILE is not set/);
  }
});

t.test('redis-credentials: no verifier gets the issuer\'s Redis credentials; every Redis client has its own user', async (t) => {
  {
    const objects = await overlayObjects();
    podSpec(find(objects, 'Deployment', 'orders')).volumes?.push({ name: 'stolen', secret: { secretName: 'redis-issuer-credentials' } });
    reports(t, checkRedisCredentials(objects, ctx), 'redis-credentials', /Deployment\/orders: references the issuer's Redis credentials \(Secret redis-issuer-credentials\), which may write the revocation store; only auth may/);
  }
  {
    const objects = await overlayObjects();
    const app = container(find(objects, 'Deployment', 'authz'), 'authz');
    for (const e of app.env ?? []) if (e.valueFrom?.secretKeyRef?.name === 'redis-verifier-credentials') e.valueFrom.secretKeyRef.name = 'redis-issuer-credentials';
    reports(t, checkRedisCredentials(objects, ctx), 'redis-credentials', /Deployment\/authz: references the issuer's Redis credentials/);
  }
  {
    const objects = await overlayObjects();
    const spec = podSpec(find(objects, 'Deployment', 'profile'));
    spec.volumes = spec.volumes?.filter((v) => v.secret?.secretName !== 'redis-verifier-credentials');
    const app = container(find(objects, 'Deployment', 'profile'), 'app');
    app.env = app.env?.filter((e) => e.valueFrom?.secretKeyRef?.name !== 'redis-verifier-credentials');
    reports(t, checkRedisCredentials(objects, ctx), 'redis-credentials', /Deployment\/profile: a Redis client without its own Redis user: it references no Secret redis-verifier-credentials/);
  }
  {
    const objects = await overlayObjects();
    const app = container(find(objects, 'Deployment', 'inventory'), 'app');
    for (const e of app.env ?? []) if (e.name === 'REDIS_URL') e.value = 'redis://:hunter2@redis:6379/0';
    reports(t, checkRedisCredentials(objects, ctx), 'redis-credentials', /Deployment\/inventory \[app\]: REDIS_URL carries a password in the manifest/);
  }
  t.same(messages(checkRedisCredentials(await overlayObjects(), ctx)), [], 'the real overlay holds it');
});

t.test('tracing: with the component every workload exports to the collector and every Envoy has the tracer; without it none does', async (t) => {
  const traced = await overlayObjects('kind-tracing');
  t.same(messages(checkTracing(traced, ctx)), [], 'kind-tracing holds it');
  t.same(messages(checkTracing(await overlayObjects('kind'), ctx)), [], 'kind (no component) holds it');
  const apps: Array<[string, string]> = [['auth', 'auth'], ['authz', 'authz'], ['orders', 'app'], ['inventory', 'app'], ['profile', 'app']];
  {
    // The OTLP endpoint gone from jwt-mesh-env: every Node container is reported.
    const objects = await overlayObjects('kind-tracing');
    delete (find(objects, 'ConfigMap', 'jwt-mesh-env')['data'] as Record<string, string>)['OTEL_EXPORTER_OTLP_ENDPOINT'];
    const v = checkTracing(objects, ctx);
    for (const [d, c] of apps) reports(t, v, 'tracing', new RegExp(`Deployment/${d} \\[${c}\\]: no OTLP endpoint`));
    t.equal(v.length, apps.length, 'one per Node container, none for Envoy, Jaeger or the collector');
  }
  {
    // One Envoy config without its tracer on one listener.
    const objects = await overlayObjects('kind-tracing');
    editEnvoyConfig(objects, 'envoy-sidecar-inventory', (c) => {
      const outbound = c.static_resources.listeners.find((l: { name: string }) => l.name === 'outbound');
      delete outbound.filter_chains[0].filters[0].typed_config.tracing;
    });
    reports(t, checkTracing(objects, ctx), 'tracing', /Deployment\/inventory \[envoy\]: envoy-sidecar-inventory-\w+ listener outbound has no OpenTelemetry tracer/);
  }
  {
    // The exporter cluster pointed elsewhere; a Node process exporting elsewhere; a sampler that ignores the parent.
    const objects = await overlayObjects('kind-tracing');
    editEnvoyConfig(objects, 'envoy-edge', (c) => {
      const cl = c.static_resources.clusters.find((x: { name: string }) => x.name === 'opentelemetry_collector');
      cl.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = 'collector.example.com';
    });
    const authz = container(find(objects, 'Deployment', 'authz'), 'authz');
    authz.env = [...(authz.env ?? []), { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://jaeger.jwt-mesh.svc.cluster.local:4318' }];
    const orders = container(find(objects, 'Deployment', 'orders'), 'app');
    orders.env = [...(orders.env ?? []), { name: 'OTEL_TRACES_SAMPLER', value: 'always_on' }];
    const v = checkTracing(objects, ctx);
    reports(t, v, 'tracing', /Deployment\/edge \[envoy\]: envoy-edge-\w+ listener edge_http exports through cluster opentelemetry_collector, which does not point at otel-collector:4318/);
    reports(t, v, 'tracing', /Deployment\/authz \[authz\]: OTEL_EXPORTER_OTLP_ENDPOINT http:\/\/jaeger\.jwt-mesh\.svc\.cluster\.local:4318 is not the collector's OTLP\/HTTP endpoint/);
    reports(t, v, 'tracing', /Deployment\/orders \[app\]: OTEL_TRACES_SAMPLER always_on ignores the incoming traceparent/);
  }
  {
    // Without the component: an endpoint or a tracer is a violation (nothing to export to).
    const objects = await overlayObjects('kind');
    const profile = container(find(objects, 'Deployment', 'profile'), 'app');
    profile.env = [...(profile.env ?? []), { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://otel-collector:4318' }];
    editEnvoyConfig(objects, 'envoy-sidecar-orders', (c) => {
      const inbound = c.static_resources.listeners.find((l: { name: string }) => l.name === 'inbound');
      inbound.filter_chains[0].filters[0].typed_config.tracing = { provider: { name: 'envoy.tracers.opentelemetry' } };
    });
    const v = checkTracing(objects, ctx);
    reports(t, v, 'tracing', /Deployment\/profile \[app\]: OTEL_EXPORTER_OTLP_ENDPOINT is set \(http:\/\/otel-collector:4318\) but there is no collector/);
    reports(t, v, 'tracing', /Deployment\/orders \[envoy\]: envoy-sidecar-orders-\w+ listener inbound has a tracer but there is no collector/);
  }
});

t.test('network-policy with the tracing component: the workloads reach the collector, the collector Jaeger, and nothing else new', async (t) => {
  t.same(messages(checkNetworkPolicies(await overlayObjects('kind-tracing'), ctx)), [], 'kind-tracing holds it');
  {
    const objects = (await overlayObjects('kind-tracing')).filter((o) => !(o.kind === 'NetworkPolicy' && o.metadata.name === 'otlp-export'));
    const v = checkNetworkPolicies(objects, ctx);
    reports(t, v, 'network-policy', /Envoy cluster opentelemetry_collector \(envoy-edge-\w+\): NetworkPolicies block Deployment\/edge -> Deployment\/otel-collector port 4318/);
    reports(t, v, 'network-policy', /Deployment\/orders: OTEL_EXPORTER_OTLP_ENDPOINT of container app: NetworkPolicies block Deployment\/orders -> Deployment\/otel-collector port 4318/);
  }
  {
    const objects = (await overlayObjects('kind-tracing')).filter((o) => !(o.kind === 'NetworkPolicy' && o.metadata.name === 'jaeger'));
    reports(t, checkNetworkPolicies(objects, ctx), 'network-policy', /otel-collector needs jaeger:4317: NetworkPolicies block Deployment\/otel-collector -> Deployment\/jaeger/);
  }
  {
    // Opening the collector to every pod lets PostgreSQL and Redis in too: reported.
    const objects = await overlayObjects('kind-tracing');
    const policy = find(objects, 'NetworkPolicy', 'otel-collector')['spec'] as { ingress: Array<Record<string, unknown>> };
    policy.ingress[0] = { ports: [{ protocol: 'TCP', port: 4318 }] };
    const allowEgress = find(objects, 'NetworkPolicy', 'otlp-export')['spec'] as { podSelector: Record<string, unknown> };
    allowEgress.podSelector = {};
    const v = checkNetworkPolicies(objects, ctx);
    reports(t, v, 'network-policy', /otel-collector: StatefulSet\/postgres can reach otel-collector:4318; only edge, auth, authz, orders, inventory, profile may/);
  }
});
