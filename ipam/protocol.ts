/** Wire types of Docker's remote IpamDriver protocol (libnetwork ipams/remote/api), as zod schemas. */
import { z } from 'zod';

export const RequestPoolRequest = z.object({
  AddressSpace: z.string().nullish(),
  Pool: z.string().nullish(),
  SubPool: z.string().nullish(),
  Options: z.record(z.string(), z.string()).nullish(),
  V6: z.boolean().nullish(),
});

export const ReleasePoolRequest = z.object({ PoolID: z.string().min(1, 'must be the PoolID RequestPool returned') });

export const RequestAddressRequest = z.object({
  PoolID: z.string().min(1, 'must be the PoolID RequestPool returned'),
  Address: z.string().nullish(),
  Options: z.record(z.string(), z.string()).nullish(),
});

export const ReleaseAddressRequest = z.object({
  PoolID: z.string().nullish(),
  Address: z.string().nullish(),
});
