/**
 * Loads the YAML route policy file. Parsing the YAML is this module's job; validating the
 * document is the core's (`parsePolicy`), so the Fastify plugin and this server accept exactly
 * the same policies.
 */
import { readFileSync } from 'node:fs';
import { parse, YAMLParseError } from 'yaml';
import { parsePolicy, type Policy } from '@jwt-mesh/core';

/** A policy file that cannot be read, parsed or validated; the message names the file (and the field). */
export class PolicyFileError extends Error {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`policy file ${file}: ${message}`, options);
    this.name = new.target.name;
    this.file = file;
  }
}

/**
 * Reads, parses (YAML 1.2, duplicate keys rejected) and validates a policy file.
 *
 * @param file - path of the YAML file (see README "Policy file")
 * @returns the validated {@link Policy}
 * @throws PolicyFileError naming the file, with the YAML line/column or the core's field name
 */
export function loadPolicyFile(file: string): Policy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PolicyFileError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parse(text, { uniqueKeys: true, prettyErrors: true });
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '';
    throw new PolicyFileError(file, `is not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  try {
    return parsePolicy(doc);
  } catch (err) {
    throw new PolicyFileError(file, (err as Error).message, { cause: err });
  }
}
