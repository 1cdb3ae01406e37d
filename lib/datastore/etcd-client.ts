/**
 * Every etcd3 client of this project is made here. grpc-js gives Node's TLS the endpoint's host as
 * ServerName (SNI) even when it is an IP address, which RFC 6066 forbids and Node warns about
 * (DEP0123) on the first connection to https://127.0.0.1 (the embedded etcd) or any etcd named
 * by address. Certificate checks do not need it: without a ServerName Node checks the
 * certificate against the connection's host, the same IP. So for IP hosts it is left out.
 */
import net from 'node:net';
import { Etcd3, type IOptions } from 'etcd3';

interface Connector {
  connectionOptions?: { servername?: string };
}
interface SecureCredentials {
  _createSecureConnector?: (...args: unknown[]) => Connector;
}

/**
 * The channel credentials etcd3 built are one object shared by its hosts and its authenticator;
 * its connector is made when a connection starts, after this runs. If grpc-js changes shape the
 * patch does nothing (the warning comes back; test/integration/etcd-tls.test.ts says so).
 */
function omitIpServerName(client: Etcd3): void {
  const pool = (client as unknown as { pool?: { authenticator?: { credentials?: SecureCredentials } } }).pool;
  const creds = pool?.authenticator?.credentials;
  const make = creds?._createSecureConnector;
  if (!creds || typeof make !== 'function') return;
  creds._createSecureConnector = (...args: unknown[]) => {
    const connector = make.apply(creds, args);
    const o = connector?.connectionOptions;
    if (o?.servername !== undefined && net.isIP(o.servername)) delete o.servername;
    return connector;
  };
}

export function createEtcd3(options: IOptions): Etcd3 {
  const client = new Etcd3(options);
  omitIpServerName(client);
  return client;
}
