/**
 * `envoy --mode validate` over the ConfigMaps: the real ones pass (see overlays.test.ts); a
 * ConfigMap with an invalid field, a missing certificate file or broken YAML fails, naming the
 * ConfigMap and carrying Envoy's own message.
 */
import t from 'tap';
import { validateEnvoyConfigs } from '../src/envoy-validate.js';
import { editEnvoyConfig, find, overlayObjects } from './helpers.js';

t.test('broken Envoy configs fail envoy --mode validate; the others in the same render still pass', async (t) => {
  const objects = await overlayObjects();
  editEnvoyConfig(objects, 'envoy-sidecar-orders', (c) => {
    c.static_resources.clusters[0].connect_timeout_typo = '1s';
  });
  editEnvoyConfig(objects, 'envoy-sidecar-inventory', (c) => {
    const inbound = c.static_resources.listeners.find((l: { name: string }) => l.name === 'inbound');
    inbound.filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.filename =
      '/etc/jwt-mesh/certs/inventory/missing.crt';
  });
  editEnvoyConfig(objects, 'envoy-edge', (c) => {
    c.static_resources.clusters.find((x: { name: string }) => x.name === 'authz').lb_policy = 'FASTEST';
  });
  const results = await validateEnvoyConfigs(objects);
  const by = (name: string) => results.find((r) => r.configMap === find(objects, 'ConfigMap', name).metadata.name);
  t.equal(by('envoy-sidecar-orders')?.ok, false, 'unknown field');
  t.match(by('envoy-sidecar-orders')?.output, /connect_timeout_typo/);
  t.equal(by('envoy-sidecar-inventory')?.ok, false, 'missing certificate file');
  t.match(by('envoy-sidecar-inventory')?.output, /missing\.crt/);
  t.equal(by('envoy-edge')?.ok, false, 'invalid enum value');
  t.match(by('envoy-edge')?.output, /FASTEST/);
  t.equal(by('envoy-sidecar-profile')?.ok, true, 'the untouched sidecar config still validates');
});
