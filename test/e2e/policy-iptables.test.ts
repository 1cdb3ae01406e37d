/** The policy end-to-end suite (policy.test.ts) again, with CALICO_FIREWALL=iptables. */
process.env.CALICO_TEST_FIREWALL = 'iptables';
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('./policy.test');
