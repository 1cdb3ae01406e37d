import winston from 'winston';

/** Structured JSON logs on stderr: one line per request at debug, state changes at info. */
export type Logger = winston.Logger;

const levels = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof levels)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (levels as readonly string[]).includes(s);
}

export function createLogger(level: LogLevel = 'info', defaultMeta: Record<string, unknown> = {}): Logger {
  const logger = winston.createLogger({
    level,
    defaultMeta,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
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
