import winston from 'winston';

/**
 * Logs on stderr: one line per request at debug, state changes at info. JSON, one object per
 * line, for journald, `docker plugin` logs and anything that parses them; short text lines for a
 * person at a terminal (`scripts/start.sh`). Which one: CALICO_LOG_FORMAT, else text exactly when
 * stderr is a terminal.
 */
export type Logger = winston.Logger;

const levels = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof levels)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (levels as readonly string[]).includes(s);
}

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS = ['auto', 'text', 'json'] as const;
export type LogFormatSetting = (typeof LOG_FORMATS)[number];

export function isLogFormatSetting(s: string): s is LogFormatSetting {
  return (LOG_FORMATS as readonly string[]).includes(s);
}

/** `auto`: text for a terminal, JSON for a file, a pipe or the journal. */
export function resolveLogFormat(setting: LogFormatSetting, stderrIsTTY: boolean): LogFormat {
  return setting === 'auto' ? (stderrIsTTY ? 'text' : 'json') : setting;
}

// Printed bare when they are plain words; quoted (JSON) otherwise, so a line still splits on spaces.
const bare = /^[\w./:@,+-]{1,200}$/;

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return bare.test(v) ? v : JSON.stringify(v.length > 500 ? `${v.slice(0, 500)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

/**
 * `08:15:14.523 WARN  message key=value ...`, in local time: the fields every line of this
 * process shares (its node name) are left out, and a stack only follows an error, which is
 * unexpected by definition; warnings and retries are expected and say enough in one line.
 */
export function textLine(info: Record<string, unknown>, shared: ReadonlySet<string> = new Set()): string {
  const d = typeof info.timestamp === 'string' ? new Date(info.timestamp) : new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  const level = String(info.level).toUpperCase().padEnd(5);
  const skip = new Set(['level', 'message', 'timestamp', 'stack', ...shared]);
  const fields = Object.keys(info)
    .filter((k) => !skip.has(k) && info[k] !== undefined)
    .map((k) => `${k}=${fieldValue(info[k])}`);
  const line = [time, level, String(info.message), ...fields].join(' ');
  const stack = info.level === 'error' && typeof info.stack === 'string' ? `\n    ${info.stack.split('\n').join('\n    ')}` : '';
  return line + stack;
}

function formatFor(format: LogFormat, shared: ReadonlySet<string>): winston.Logform.Format {
  if (format === 'json') return winston.format.combine(winston.format.timestamp(), winston.format.json());
  return winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf((info) => textLine(info, shared)),
  );
}

export function createLogger(level: LogLevel = 'info', defaultMeta: Record<string, unknown> = {}, format: LogFormat = 'json'): Logger {
  const logger = winston.createLogger({
    level,
    defaultMeta,
    format: formatFor(format, new Set(Object.keys(defaultMeta))),
    transports: [new winston.transports.Console({ stderrLevels: [...levels] })],
  });
  return skipDisabledLevels(logger);
}

/**
 * winston formats every entry (timestamp, JSON) before its transports drop the ones below the
 * level; every container start logs several info lines, so below the level return at once.
 */
function skipDisabledLevels(logger: Logger): Logger {
  for (const l of levels) {
    const write = logger[l];
    // `this`, not `logger`: child loggers inherit these methods and must keep their metadata.
    logger[l] = function (this: Logger | undefined, ...args: unknown[]) {
      const self = this ?? logger;
      return self.isLevelEnabled(l) ? (write as (...a: unknown[]) => Logger).apply(self, args) : self;
    } as winston.LeveledLogMethod;
  }
  return logger;
}

/** A logger that drops everything, for unit tests and CLI commands that print their own output. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
