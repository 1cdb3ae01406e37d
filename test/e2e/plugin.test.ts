/** The end-to-end checks through the managed plugin (see docker.test.ts). */
import { dockerSuite } from './docker.test';

dockerSuite('managed');
