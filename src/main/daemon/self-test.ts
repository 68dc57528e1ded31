// `mandos --check`: the server's own self-tests (the reference runs its
// doctests). Each check exercises a piece the server cannot work without;
// the result is printed and is the exit status.

import { createHash, generateKeyPairSync } from "node:crypto";
import {
  DEFAULT_PRIORITY,
  TlsClient,
  TlsServer,
  generateEphemeralKeyShares,
  keyId,
  parsePriority,
  runLoopback,
} from "../../tls/index.js";
import { parseClientsConfig } from "../config/index.js";
import { parseDuration } from "../config/duration.js";
import { handshakeSecrets, trafficKeys } from "../../tls/crypto.js";
import { suiteByName } from "../../tls/constants.js";
import { datagramAddon, openDatagramSocket } from "./unix-datagram.js";

interface Check {
  readonly name: string;
  readonly run: () => void;
}

function expect(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
}

const CHECKS: Check[] = [
  {
    // The server serves without it, but logs to no syslog and tells
    // systemd nothing: after an upgrade of Node.js, this is what says so.
    name: "the datagram addon (syslog, systemd) loads on this Node.js",
    run: () => {
      const addon = datagramAddon();
      if ("unavailable" in addon) throw new Error(addon.unavailable);
      let refused = "";
      const socket = openDatagramSocket(addon, (why) => { refused = why; });
      expect(socket !== null, `no socket: ${refused}`);
      // sendto(2) is reached: a path nobody bound is the kernel's ENOENT.
      const sent = socket?.send("self-test", "/nonexistent/mandos-self-test");
      socket?.close();
      expect(sent === "No such file or directory", `sendto to a missing socket: ${sent ?? "sent"}`);
    },
  },
  {
    name: "durations parse as the reference's string_to_delta",
    run: () => {
      expect(parseDuration("PT5M") === 300_000, "PT5M");
      expect(parseDuration("P1M") === 28 * 86_400_000, "P1M is 4 weeks");
      expect(parseDuration("1d 2h") === 93_600_000, "1d 2h");
      expect(parseDuration("1d2h") === undefined, "1d2h is an error");
    },
  },
  {
    name: "clients.conf with interpolation and a base64 secret",
    run: () => {
      const [c] = parseClientsConfig("[DEFAULT]\nhost = h\n[c]\nkey_id = ab cd\nsecret = Zm9v\nchecker = x %%(host)s %(host)s\n", "self-test");
      expect(c?.keyId === "ABCD" && c.secret.toString() === "foo" && c.checker === "x %(host)s h", "parsed client");
    },
  },
  {
    name: "TLS 1.3 key schedule (RFC 8448 §3)",
    run: () => {
      const suite = suiteByName("TLS_AES_128_GCM_SHA256");
      const hs = handshakeSecrets(
        suite,
        Buffer.from("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d", "hex"),
        Buffer.from("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8", "hex"),
      );
      expect(Buffer.from(trafficKeys(suite, hs.serverHandshakeTraffic).key).toString("hex") === "3fce516009c21727d0f2e4e86ee403bc", "server handshake key");
    },
  },
  {
    name: "a raw-public-key handshake with the default priority delivers a secret",
    run: () => {
      const settings = parsePriority(DEFAULT_PRIORITY);
      const pair = generateKeyPairSync("ed25519");
      const spki = pair.publicKey.export({ type: "spki", format: "der" });
      const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
      const server = new TlsServer(settings, { privateKey: pair.privateKey, publicKeySpki: spki });
      let peer = "";
      let received = "";
      client.start();
      runLoopback(
        {
          engine: client,
          event: (e) => {
            if (e.type === "error") throw e.error;
            if (e.type === "handshake-complete") {
              peer = e.keyId;
              client.send(Buffer.from("self-test"));
            }
          },
        },
        {
          engine: server,
          event: (e) => {
            if (e.type === "data") received += e.data.toString();
          },
        },
      );
      expect(peer === keyId(spki) && peer === createHash("sha256").update(spki).digest("hex").toUpperCase(), "key ID");
      expect(received === "self-test", "secret received");
    },
  },
];

/** Runs every check; prints one line each and a summary. True if all passed. */
export function runSelfTest(out: (line: string) => void = (l) => void process.stdout.write(`${l}\n`)): boolean {
  let failed = 0;
  for (const check of CHECKS) {
    try {
      check.run();
      out(`ok: ${check.name}`);
    } catch (error) {
      failed++;
      out(`FAILED: ${check.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  out(`${CHECKS.length - failed} passed, ${failed} failed`);
  return failed === 0;
}
