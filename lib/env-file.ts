/**
 * `/etc/calico/calico.env`: the file the systemd unit hands `calico node` (EnvironmentFile=), read
 * by `calico node` and the CLI too, so a command typed on that host sees the same settings with
 * nothing exported. Parsed as systemd parses it: `KEY=VALUE` lines; blank lines and lines starting
 * with `#` or `;` are comments; whitespace around the key and the value is dropped; a value may
 * start with '...' (literal) or "..." (\" \\ \` \$ escaped), quoted parts may span lines, and a
 * quote later in a value is an ordinary character; outside quotes a backslash escapes the next
 * character and one at the end of a line continues the value. `#` after a value is part of it.
 * What systemd would skip with a warning (a line without `=`, a bad name, an open quote) is refused
 * here with the file and line, so a typo is found when the command runs, not as a missing setting.
 */
import fs from 'node:fs';
import { ConfigError, errorMessage } from './errors';

export const DEFAULT_CONFIG_FILE = '/etc/calico/calico.env';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function refuse(file: string, line: number, what: string): never {
  throw new ConfigError(`${file} line ${line}: ${what} (the file takes KEY=VALUE lines, as systemd's EnvironmentFile=)`);
}

export function parseEnvFile(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  // systemd ends lines at \r too: CRLF files read the same.
  text = text.replace(/\r\n?/g, '\n');
  let line = 1;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '\n') {
      line++;
      i++;
      continue;
    }
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '#' || c === ';') {
      // As systemd: a backslash at the end of a comment line continues the comment.
      while (i < n && text[i] !== '\n') {
        if (text[i] === '\\' && text[i + 1] === '\n') {
          i++;
          line++;
        }
        i++;
      }
      continue;
    }
    const start = line;
    const eol = text.indexOf('\n', i) < 0 ? n : text.indexOf('\n', i);
    const eq = text.indexOf('=', i);
    if (eq < 0 || eq > eol) refuse(file, start, `"${text.slice(i, eol).trim().slice(0, 80)}" has no "="`);
    const key = text.slice(i, eq).trim();
    if (/^export\s/.test(key)) refuse(file, start, `"export" is shell syntax systemd does not read: write ${key.replace(/^export\s+/, '')}=...`);
    if (!NAME.test(key)) refuse(file, start, `"${key.slice(0, 80)}" is not a variable name (letters, digits and _, not starting with a digit)`);
    i = eq + 1;
    // systemd's states: before the value (whitespace skipped, quotes open) and inside it.
    let value = '';
    let inValue = false;
    let trailing = -1; // where unescaped whitespace at the end of the value starts
    while (i < n && text[i] !== '\n') {
      const ch = text[i];
      if (ch === '\\') {
        if (text[i + 1] === '\n') line++;
        else if (i + 1 < n) value += text[i + 1];
        inValue = true;
        trailing = -1;
        i += 2;
      } else if (!inValue && (ch === "'" || ch === '"')) {
        const opened = line;
        for (i++; ; i++) {
          if (i >= n) refuse(file, opened, `the ${ch === '"' ? 'double' : 'single'} quote opened here is never closed`);
          const q = text[i];
          if (q === ch) break;
          if (q === '\n') line++;
          if (ch === '"' && q === '\\' && i + 1 < n) {
            const next = text[++i];
            if (next === '\n') line++;
            else value += '"\\`$'.includes(next) ? next : `\\${next}`;
            continue;
          }
          value += q;
        }
        i++;
      } else if (ch === ' ' || ch === '\t') {
        if (inValue) {
          if (trailing < 0) trailing = value.length;
          value += ch;
        }
        i++;
      } else {
        inValue = true;
        trailing = -1;
        value += ch;
        i++;
      }
    }
    if (trailing >= 0) value = value.slice(0, trailing);
    out[key] = value;
  }
  return out;
}

/**
 * The settings file to read: `--config FILE` (the CLI passes it as CALICO_CONFIG), else
 * CALICO_CONFIG, else the default. Only the default may be absent.
 */
export function readConfigFile(
  env: Record<string, string | undefined>,
  defaultFile = DEFAULT_CONFIG_FILE,
): { file: string; vars: Record<string, string> } | undefined {
  const named = env.CALICO_CONFIG?.trim();
  const file = named || defaultFile;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!named && code === 'ENOENT') return undefined;
    const why = code === 'EACCES' ? 'permission denied: run as root (it may hold ETCD_PASSWORD), or pass --config FILE' : errorMessage(err);
    throw new ConfigError(`cannot read the settings file ${file}${named ? ' (CALICO_CONFIG or --config)' : ''}: ${why}`, { cause: err });
  }
  return { file, vars: parseEnvFile(text, file) };
}

/** The environment as `calico node` and the CLI see it: the settings file, overridden by the environment. */
export function withConfigFile(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const found = readConfigFile(env);
  return found ? { ...found.vars, ...env } : env;
}
