/** Request validation with zod, turning the first problem into a message that names the field. */
import type { z } from 'zod';
import { BadRequestError } from './errors';

export function parseRequest<S extends z.ZodType>(schema: S, body: unknown, method: string): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.path.length ? issue.path.join('.') : '(body)';
  throw new BadRequestError(`invalid ${method} request: field "${field}": ${issue.message}`);
}
