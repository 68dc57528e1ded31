// The TLS 1.3 client role, sans-IO: what the Mandos server runs (Mandos
// reverses the roles: the server is the TLS client and presents no key).
//
// Contract: receive() takes bytes from the peer; takeOutput() gives bytes to
// send; nextEvent() gives what happened; takeTask() gives an expensive step
// to run (runHandshakeTask, inline or on a worker) whose result goes back
// through completeTask(); drive.ts does all of that for a caller. No I/O, no
// timers, no exceptions out of the engine: every failure becomes an "error"
// event, an alert in the output, and the Failed state, which ignores all
// further input (endpoint.ts, shared with the server role).
//
// Handshake states, each holding only what it needs (named after what it
// waits for):
//   ExpectServerHello  -> (HRR) AwaitKeyShare -> ExpectServerHello (once)
//                      -> ExpectServerFlight -> Connected (endpoint.ts)
//                      -> Tls12 (a legacy peer chose TLS 1.2; tls12/client12.ts
//                         runs its states) -> Connected
// One ClientHello offers both generations when the priority string serves
// both (messages.ts, encodeClientHello); the ServerHello decides.

import { ContentType, HandshakeType, groupByCode, suiteByCode, suiteByName, type CipherSuiteInfo, type NamedGroup, type SignatureScheme } from "./constants.js";
import { digest, type KeyShare } from "./crypto.js";
import { TlsError, fromErrorData, tlsErrorAs, type TlsErrorData } from "./errors.js";
import { schemeCodes, type FlightProgress, type ServerFlightResult } from "./flight.js";
import { FlightBuffer } from "./flight-buffer.js";
import { ApplicationChannel } from "./channel.js";
import { TlsEndpoint, plainAlert } from "./endpoint.js";
import { ClientHelloTemplate, encodeClientHello, messageHash, parseServerHello, type ClientHelloParams } from "./messages.js";
import type { TlsSettings } from "./priority.js";
import { HandshakeAssembler, RecordFramer, bufferView, ownedConcat, ownedCopy, plainRecord, type RawRecord } from "./record.js";
import { sealRecord } from "./crypto.js";
import type { EphemeralKeyShares, HandshakeTask, HandshakeTaskResult } from "./tasks.js";
import { Tls12ClientHandshake } from "./tls12/client12.js";
import { serverHelloIsTls13 } from "./tls12/messages12.js";

export type { TlsEvent } from "./endpoint.js";

type ClientState =
  | { readonly name: "Start" }
  | {
      readonly name: "ExpectServerHello";
      readonly transcript: Buffer;
      readonly shares: readonly KeyShare[];
      readonly retried: boolean;
      readonly cookie: Buffer | null;
    }
  | {
      readonly name: "AwaitKeyShare";
      readonly transcript: Buffer;
      readonly group: NamedGroup;
      readonly cookie: Buffer | null;
    }
  | {
      readonly name: "ExpectServerFlight";
      readonly suite: CipherSuiteInfo;
      readonly group: NamedGroup;
      readonly share: KeyShare;
      readonly serverShare: Buffer;
      readonly transcript: Buffer;
      /** Records not yet through a task, and those the task that is out has. */
      readonly flight: FlightBuffer;
      /** Where the last task stopped; each record goes through one task only. */
      progress: FlightProgress | undefined;
    }
  | { readonly name: "Tls12"; readonly handshake: Tls12ClientHandshake }
  | { readonly name: "Done" };

/** Everything a ClientHello says, from the settings and this connection's values. */
export function clientHelloParams(
  settings: TlsSettings, random: Uint8Array, sessionId: Uint8Array, shares: readonly KeyShare[], cookie: Buffer | null,
): ClientHelloParams {
  const legacy = settings.legacy;
  return {
    random,
    sessionId,
    cipherSuites: [...settings.cipherSuites.map((n) => suiteByName(n).code), ...(legacy?.suites ?? [])],
    groups: settings.groups,
    shares,
    signatureSchemes: settings.signatureSchemes,
    cookie: cookie ?? undefined,
    tls13: settings.modern,
    legacy,
  };
}

/** One ClientHello template per settings object (a server has one; a reload makes another). */
const templates = new WeakMap<TlsSettings, ClientHelloTemplate>();

/** The settings' template, made afresh for values it cannot place (another session ID length or share group). */
function templateFor(settings: TlsSettings, sessionId: Uint8Array, shares: readonly KeyShare[]): ClientHelloTemplate {
  let template = templates.get(settings);
  if (!template || !template.fits(sessionId, shares)) {
    template = new ClientHelloTemplate(clientHelloParams(settings, new Uint8Array(32), sessionId, shares, null));
    templates.set(settings, template);
  }
  return template;
}

export class TlsClient extends TlsEndpoint {
  readonly #settings: TlsSettings;
  readonly #ephemeral: EphemeralKeyShares;
  readonly #hello = new HandshakeAssembler();
  #state: ClientState = { name: "Start" };
  #task: HandshakeTask | null = null;
  #taskOut = false;
  readonly #middlebox: boolean;

  constructor(settings: TlsSettings, ephemeral: EphemeralKeyShares) {
    super();
    this.#settings = settings;
    this.#ephemeral = ephemeral;
    this.#middlebox = ephemeral.sessionId.length > 0;
  }

  protected get handshakeState(): string {
    return this.#state.name === "Tls12" ? this.#state.handshake.name : this.#state.name;
  }

  /**
   * Whether the peer's ServerHello chose TLS 1.2 (a legacy client, OpenPGP),
   * failed since or not: the reference it would have met is the legacy one.
   */
  get legacySession(): boolean {
    return this.#state.name === "Tls12";
  }

  protected override get alertsProtected(): boolean {
    return this.#state.name === "Tls12" && this.#state.handshake.alertsProtected;
  }

  start(): void {
    if (this.#state.name !== "Start") return;
    const shares = this.#ephemeral.shares;
    const hello = this.#clientHello(shares, null);
    this.output(plainRecord(ContentType.Handshake, hello, 0x0301));
    this.#state = { name: "ExpectServerHello", transcript: hello, shares, retried: false, cookie: null };
  }

  takeTask(): HandshakeTask | null {
    if (this.failed) return null;
    const task = this.#task ?? (this.#state.name === "Tls12" ? this.#state.handshake.takeTask() : this.#flightTask());
    if (task) {
      this.#task = null;
      this.#taskOut = true;
    }
    return task;
  }

  completeTask(result: HandshakeTaskResult): void {
    this.#taskOut = false;
    if (this.failed) return;
    try {
      if (result.kind === "key-share") this.#onRetryShare(result.share);
      else if (result.kind === "tls12-flight") {
        if (this.#state.name === "Tls12") this.#state.handshake.onTaskResult(result.result);
      } else this.#onFlightResult(result.result);
    } catch (error) {
      this.fail(error);
    }
  }

  // ------------------------------------------------------------------

  #clientHello(shares: readonly KeyShare[], cookie: Buffer | null): Buffer {
    const { random, sessionId } = this.#ephemeral;
    if (cookie === null) return templateFor(this.#settings, sessionId, shares).fill(random, sessionId, shares);
    return encodeClientHello(clientHelloParams(this.#settings, random, sessionId, shares, cookie));
  }

  protected onHandshakeRecord(rec: RawRecord): void {
    const state = this.#state;
    switch (state.name) {
      case "ExpectServerHello":
        if (rec.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} before ServerHello`);
        this.#hello.push(rec.body);
        for (let msg = this.#hello.next(); msg; msg = this.#hello.next()) {
          if (this.#state !== state) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "handshake data after ServerHello");
          if (msg.type !== HandshakeType.ServerHello) throw tlsErrorAs("GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET", "TLS_UNEXPECTED_MESSAGE", `expected ServerHello, got ${msg.type}`);
          if (this.#settings.legacy && !serverHelloIsTls13(msg.body)) {
            // TLS 1.2: the rest of the server's flight may share this record.
            this.#startTls12(state, msg.raw, this.#hello.pending);
            return;
          }
          this.#onServerHello(state, msg.raw, msg.body);
        }
        if (this.#state !== state && this.#hello.partial) {
          throw new TlsError("TLS_UNEXPECTED_MESSAGE", "handshake message spans a key change");
        }
        return;
      case "ExpectServerFlight":
        if (rec.type !== ContentType.ApplicationData) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `unprotected record type ${rec.type} after ServerHello`);
        // Bounded by MAX_HANDSHAKE_BUFFER_BYTES (endpoint.ts) and MAX_FLIGHT_RECORDS until the flight is checked.
        state.flight.append(rec.bytes);
        return;
      case "AwaitKeyShare":
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", "data before our second ClientHello");
      case "Start":
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", "data before ClientHello");
      case "Tls12":
        state.handshake.onRecord(rec);
        return;
      case "Done":
        return;
    }
  }

  #startTls12(state: Extract<ClientState, { name: "ExpectServerHello" }>, raw: Buffer, rest: Buffer): void {
    // RFC 8446 §4.1.4: after a HelloRetryRequest the server must go on in TLS 1.3.
    if (state.retried) throw new TlsError("TLS_ILLEGAL_PARAMETER", "TLS 1.2 ServerHello after a HelloRetryRequest");
    const legacy = this.#settings.legacy!;
    const offer = { suites: legacy.suites, signatures: legacy.signatures, offeredTls13: this.#settings.modern };
    const host = { output: (bytes: Buffer) => this.output(bytes), connect: this.connect.bind(this) };
    this.#state = { name: "Tls12", handshake: new Tls12ClientHandshake(host, offer, state.transcript, this.#ephemeral.random, raw, rest) };
  }

  protected override onChangeCipherSpec(rec: RawRecord): void {
    if (this.#state.name === "Tls12") {
      this.#state.handshake.onChangeCipherSpec();
      return;
    }
    // Kept in its place among the flight's records: the flight task drops it
    // before the server's Finished, and after it the replay refuses it, as a
    // change_cipher_spec that arrives once we are connected is refused.
    if (this.#state.name === "ExpectServerFlight") this.#state.flight.append(rec.bytes);
  }

  #onServerHello(state: Extract<ClientState, { name: "ExpectServerHello" }>, raw: Buffer, body: Buffer): void {
    const sh = parseServerHello(body);
    if (!this.#settings.modern) throw new TlsError("TLS_ILLEGAL_PARAMETER", "server selected TLS 1.3, which we did not offer");
    if (!sh.sessionId.equals(Buffer.from(this.#ephemeral.sessionId))) {
      throw new TlsError("TLS_ILLEGAL_PARAMETER", "legacy_session_id_echo does not match");
    }
    const suite = suiteByCode(sh.cipherSuite);
    if (!suite || !this.#settings.cipherSuites.includes(suite.name)) {
      throw tlsErrorAs("GNUTLS_E_UNKNOWN_CIPHER_SUITE", "TLS_ILLEGAL_PARAMETER", "server chose a cipher suite we did not offer");
    }
    if (sh.isRetry) {
      // RFC 8446 §4.1.4: at most one HelloRetryRequest, and it must change something.
      if (state.retried) throw tlsErrorAs("GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET", "TLS_UNEXPECTED_MESSAGE", "second HelloRetryRequest");
      const group = sh.selectedGroup === null ? null : groupByCode(sh.selectedGroup);
      if (sh.selectedGroup !== null && (!group || !this.#settings.groups.includes(group))) {
        // Said at DEBUG with the handshake's failure: a client whose
        // priority leaves only a group our default leaves out (secp521r1,
        // FFDHE) is served once the priority names it (docs/PROTOCOL.md).
        throw new TlsError("TLS_ILLEGAL_PARAMETER", group
          ? `HelloRetryRequest selects ${group}, which we did not offer: a server priority with +GROUP-${group.toUpperCase()} would`
          : `HelloRetryRequest selects group 0x${sh.selectedGroup.toString(16).padStart(4, "0")}, which we do not know`);
      }
      if (group && state.shares.some((s) => s.group === group)) {
        throw new TlsError("TLS_ILLEGAL_PARAMETER", "HelloRetryRequest selects a group we already sent a share for");
      }
      this.#retrySuite = suite;
      const transcript = ownedConcat([messageHash(digest(suite.hash, state.transcript)), raw]);
      if (group) {
        this.#state = { name: "AwaitKeyShare", transcript, group, cookie: sh.cookie };
        this.#task = { kind: "key-share", group };
      } else {
        this.#sendSecondHello(transcript, state.shares, sh.cookie);
      }
      return;
    }
    if (this.#retrySuite && this.#retrySuite.code !== suite.code) {
      throw new TlsError("TLS_ILLEGAL_PARAMETER", "ServerHello changes the cipher suite of the HelloRetryRequest");
    }
    const group = groupByCode(sh.keyShare!.group);
    const share = state.shares.find((s) => s.group === group);
    if (!group || !share) throw new TlsError("TLS_ILLEGAL_PARAMETER", "server key share for a group we sent no share for");
    this.#state = {
      name: "ExpectServerFlight",
      suite,
      group,
      share,
      // Both kept until the server's flight is through: memory of their own,
      // not views on a read or slices of a shared chunk (ownedCopy).
      serverShare: ownedCopy(sh.keyShare!.key),
      transcript: ownedConcat([state.transcript, raw]),
      flight: new FlightBuffer(),
      progress: undefined,
    };
  }

  #retrySuite: CipherSuiteInfo | null = null;

  #onRetryShare(share: KeyShare): void {
    const state = this.#state;
    if (state.name !== "AwaitKeyShare") return;
    this.#sendSecondHello(state.transcript, [share], state.cookie);
  }

  #sendSecondHello(transcript: Buffer, shares: readonly KeyShare[], cookie: Buffer | null): void {
    const hello = this.#clientHello(shares, cookie);
    // Middlebox compatibility (RFC 8446 §D.4): change_cipher_spec before the second ClientHello.
    if (this.#middlebox) this.output(plainRecord(ContentType.ChangeCipherSpec, Buffer.of(1)));
    this.output(plainRecord(ContentType.Handshake, hello));
    this.#state = { name: "ExpectServerHello", transcript: ownedConcat([transcript, hello]), shares, retried: true, cookie: null };
    this.#middleboxSent = true;
  }

  #middleboxSent = false;

  /**
   * The next flight task: the records received since the last one. Built
   * when taken, so that it carries all that a read brought rather than one
   * record; one task at a time, each going on where the last stopped. After
   * one that stopped short, none until the new records could hold the rest
   * of the message it stopped in (FlightProgress.need): a peer that sends
   * its flight one byte a read (258 reads) made us run a task for each,
   * a worker's round trip and 170 ms of CPU a connection against 3-4 for a
   * whole flight; now a task or two a handshake message.
   */
  #flightTask(): HandshakeTask | null {
    const state = this.#state;
    if (this.#taskOut || state.name !== "ExpectServerFlight" || state.flight.unhanded === 0) return null;
    if (state.progress && state.flight.unhandedRoom < state.progress.need) return null;
    return {
      kind: "server-flight",
      suite: state.suite.code,
      share: state.share,
      serverShare: state.serverShare,
      transcript: state.transcript,
      records: state.flight.hand(),
      offeredSchemes: schemeCodes(this.#settings.signatureSchemes),
      middleboxCompat: this.#middlebox && !this.#middleboxSent,
      progress: state.progress,
    };
  }

  #onFlightResult(result: ServerFlightResult): void {
    const state = this.#state;
    if (state.name !== "ExpectServerFlight") return;
    switch (result.status) {
      case "incomplete":
        state.progress = result.progress;
        state.flight.release();
        return;
      case "error":
        if (result.alertRecord) this.output(Buffer.from(result.alertRecord));
        this.fail(fromErrorData(result.error as TlsErrorData), Boolean(result.alertRecord));
        return;
      case "complete": {
        // The task's bytes are this thread's own (a structured clone, or made inline for this call): viewed, not copied.
        this.output(bufferView(result.clientFlight));
        const channel = new ApplicationChannel(state.suite, result.serverApplicationTraffic, result.clientApplicationTraffic, result.clientKeys, result.closeNotify);
        this.#state = { name: "Done" };
        this.connect(channel, {
          type: "handshake-complete",
          peerPublicKey: bufferView(result.peerPublicKey),
          keyId: result.keyId,
          cipherSuite: state.suite.name,
          group: state.group,
          signatureScheme: result.signatureScheme as SignatureScheme,
        });
        // Records after the server's Finished are under the application keys
        // (a change_cipher_spec among them is refused, however the bytes were split).
        const rest = state.flight.after(result.consumedBytes);
        if (rest.length === 0) return;
        const after = new RecordFramer();
        after.push(rest);
        for (let rec = after.next(); rec && !this.failed; rec = after.next()) this.receiveRecord(rec);
        return;
      }
    }
  }

  protected handshakeAlert(description: number): Buffer {
    const state = this.#state;
    if (state.name === "Tls12") return state.handshake.alert(description);
    if (state.name === "ExpectServerFlight" && state.progress) {
      // The server already reads under its handshake keys (RFC 8446 §4.4.1).
      return sealRecord(state.suite, state.progress.clientKeys, 0n, ContentType.Alert, Buffer.of(2, description));
    }
    return plainAlert(description);
  }
}
