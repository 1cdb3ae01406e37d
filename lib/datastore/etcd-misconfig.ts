/**
 * Failures that come from this host's etcd settings, not from etcd being down: a CA that did not
 * sign etcd's certificate, a client certificate etcd refuses, a wrong password, a user without
 * rights. grpc reports the TLS ones as UNAVAILABLE like a member that is down, so without this
 * they were retried for the whole call budget and then blamed on reachability; etcd's auth
 * answers were reported as internal errors. Each is recognised by its message (grpc and etcd
 * give no finer code) and answered with the setting to fix.
 */
import { ConfigError, errorMessage } from '../errors';

export interface EtcdSettings {
  endpoints: string[];
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
}

type Rule = { test: RegExp; advice: (s: EtcdSettings) => string };

const named = (v: string, value?: string) => (value ? `${v} (${value})` : `${v} (unset)`);

const rules: Rule[] = [
  {
    // Node's own verification of etcd's certificate.
    test: /unable to verify the first certificate|self[- ]signed certificate|unable to get (local )?issuer certificate|certificate signature failure|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN/i,
    advice: (s) =>
      `etcd's certificate is not signed by the CA in ${named('ETCD_CA_CERT_FILE', s.caFile)}: set ETCD_CA_CERT_FILE to the CA that issued etcd's certificate`,
  },
  {
    test: /certificate has expired|certificate is not yet valid|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/i,
    advice: () => `etcd's certificate is expired or not yet valid (check this host's clock too): renew etcd's certificate`,
  },
  {
    test: /does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/i,
    advice: (s) => `etcd's certificate does not name the host in ETCD_ENDPOINTS (${s.endpoints.join(',')}): use a name or address it was issued for`,
  },
  {
    // etcd refused our certificate during the handshake (TLS alerts 42, 43, 46, 48, 116).
    test: /alert (bad certificate|unsupported certificate|certificate unknown|unknown ca|certificate required)|SSL alert number (42|43|46|48|116)\b/i,
    advice: (s) =>
      s.certFile
        ? `etcd refused the client certificate ${named('ETCD_CERT_FILE', s.certFile)}: set ETCD_CERT_FILE and ETCD_KEY_FILE to a certificate and key issued by a CA etcd trusts (its --trusted-ca-file)`
        : 'etcd requires a client certificate: set ETCD_CERT_FILE and ETCD_KEY_FILE',
  },
  {
    test: /wrong version number|packet length too long/i,
    advice: () => 'etcd does not speak TLS on this port: use http:// in ETCD_ENDPOINTS, or enable TLS on etcd',
  },
  {
    test: /authentication failed|invalid user ID or password/i,
    advice: (s) => `etcd refused user ${named('ETCD_USERNAME', s.username)} and its password: check ETCD_USERNAME and ETCD_PASSWORD`,
  },
  {
    test: /user name is empty/i,
    advice: () => 'etcd requires authentication: set ETCD_USERNAME and ETCD_PASSWORD',
  },
  {
    test: /authentication is not enabled/i,
    advice: () => 'etcd has authentication off but ETCD_USERNAME is set: unset ETCD_USERNAME and ETCD_PASSWORD, or enable authentication on etcd',
  },
  {
    test: /etcdserver: permission denied/i,
    advice: (s) =>
      `etcd denied ${s.username ? `user "${s.username}" (ETCD_USERNAME)` : "this client (no ETCD_USERNAME: etcd takes the client certificate's common name as the user)"} access: grant its role readwrite on the prefix /calico-libnetwork/ (etcdctl role grant-permission ROLE --prefix=true readwrite /calico-libnetwork/), or set ETCD_USERNAME and ETCD_PASSWORD`,
  },
];

/** True when `err` is a failure only a change of settings can fix. */
export function isMisconfiguration(err: unknown): boolean {
  const msg = errorMessage(err);
  return rules.some((r) => r.test.test(msg));
}

/** The ConfigError for `err`, naming the settings to change, or undefined when it is not one. */
export function misconfiguration(err: unknown, s: EtcdSettings): ConfigError | undefined {
  const msg = errorMessage(err);
  const rule = rules.find((r) => r.test.test(msg));
  if (!rule) return undefined;
  const detail = msg.replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/, '').replace(/\.?\s*Resolution note:.*$/s, '');
  return new ConfigError(`etcd at ${s.endpoints.join(',')}: ${rule.advice(s)} (${detail.trim()})`, { cause: err });
}
