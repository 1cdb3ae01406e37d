import winston from 'winston';

/** Structured JSON logs on stderr: one line per request at debug, state changes at info. */
export type Logger = winston.Logger;

const levels = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof levels)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (levels as readonly string[]).includes(s);
}

export function createLogger(level: LogLevel = 'info', defaultMeta: Record<string, unknown> = {}): Logger {
  return winston.createLogger({
    level,
    defaultMeta,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: [...levels] })],
  });
}

/** A logger that drops everything, for unit tests and CLI commands that print their own output. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
