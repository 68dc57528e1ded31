// Zeroconf without the network: Avahi's rename rule, and what
// startAnnouncement asks of ciao (a stand-in responder records it).

import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { Responder, ResponderOptions, ServiceOptions } from "@homebridge/ciao";
import { alternativeServiceName, startAnnouncement, type Announcement, type AnnouncementOptions } from "../src/main/zeroconf/announce.js";
import type { Logger } from "../src/main/daemon/log.js";


/** startAnnouncement as "Mandos" on port 4711 with a fake responder; `over` replaces any option. */
async function fakeAnnouncement(over: Partial<AnnouncementOptions> & { bare?: boolean } = {}): Promise<{ recorded: Recorded; announcement: Announcement }> {
  const recorded: Recorded = { logs: [], shutdowns: 0, destroys: 0 };
  const { bare = false, ...options } = over;
  const announcement = await startAnnouncement({
    name: "Mandos", port: 4711, ipv6: true, logger: recordingLogger(recorded), systemBus: null,
    getResponder: fakeResponder(recorded, async () => {}, bare),
    ...options,
  });
  return { recorded, announcement };
}

test("collision renames follow Avahi: 'Mandos' -> 'Mandos #2' -> 'Mandos #3'", () => {
  assert.equal(alternativeServiceName("Mandos"), "Mandos #2");
  assert.equal(alternativeServiceName("Mandos #2"), "Mandos #3");
  assert.equal(alternativeServiceName("Mandos #9"), "Mandos #10");
  assert.equal(alternativeServiceName("My Mandos #41"), "My Mandos #42");
});

test("only a trailing ' #N' with N a number not starting with 0 counts", () => {
  assert.equal(alternativeServiceName("Mandos #0"), "Mandos #0 #2");
  assert.equal(alternativeServiceName("Mandos #02"), "Mandos #02 #2");
  assert.equal(alternativeServiceName("Mandos #2a"), "Mandos #2a #2");
  assert.equal(alternativeServiceName("Mandos#2"), "Mandos#2 #2");
  assert.equal(alternativeServiceName("Mandos #"), "Mandos # #2");
  assert.equal(alternativeServiceName("A #3 #4"), "A #3 #5");
});

test("renamed names stay within one DNS label (63 bytes), without cutting a UTF-8 character", () => {
  const long = "m".repeat(63);
  assert.equal(alternativeServiceName(long), `${"m".repeat(60)} #2`);
  const wide = "é".repeat(31); // 62 bytes
  const renamed = alternativeServiceName(wide);
  assert.equal(renamed, `${"é".repeat(30)} #2`);
  assert.ok(Buffer.byteLength(renamed) <= 63);
  assert.equal(alternativeServiceName(`${"m".repeat(59)} #99`), `${"m".repeat(58)} #100`);
});

interface Recorded {
  logs: string[];
  responderOptions?: ResponderOptions;
  serviceOptions?: ServiceOptions;
  created?: number;
  shutdowns: number;
  destroys: number;
  /** The links the last service's own advertisesOnInterface was asked about. */
  asked?: string[];
  /** The last fake responder's ciao internals, as the workarounds see them. */
  server?: {
    checkIfPacketWasPreviouslySentFromUs(name: string, packet: Buffer): boolean;
    handleMessage(name: string, packet: Buffer): unknown;
  };
  service?: { advertisesOnInterface(name: string, skipAddressCheck?: boolean): boolean };
}

/**
 * A stand-in for ciao's responder. Unless `bare`, it has the internals our
 * repairs hook, as ciao 1.3.12 has them: the MDNSServer's lookup of packets
 * sent from us (it knows one packet, "ours", sent on "eth0/6") and its
 * handleMessage (which fails on a packet "boom"), and the service's
 * advertisesOnInterface (true for "eth0" only).
 */
function fakeResponder(recorded: Recorded, advertise: () => Promise<void>, bare = false): (options: ResponderOptions) => Responder {
  return (options) => {
    recorded.responderOptions = options;
    const server = {
      checkIfPacketWasPreviouslySentFromUs: (name: string, packet: Buffer): boolean => name === "eth0/6" && packet.toString() === "ours",
      createDgramSocket: (): object => ({}),
      // As ciao's on a link that lost its IPv4 address: an assertion fails.
      handleMessage: (_name: string, packet: Buffer): unknown => {
        if (packet.toString() === "boom") throw new Error("IP address version must match");
        return "handled";
      },
    };
    if (!bare) recorded.server = server;
    return {
      ...(bare ? {} : { server }),
      createService(serviceOptions: ServiceOptions) {
        recorded.serviceOptions = serviceOptions;
        recorded.created = (recorded.created ?? 0) + 1;
        recorded.asked = [];
        const asked = recorded.asked;
        const service = Object.assign(new EventEmitter(), {
          advertise,
          destroy: async () => { recorded.destroys++; },
          ...(bare ? {} : { advertisesOnInterface: (name: string): boolean => { asked.push(name); return name === "eth0"; } }),
        });
        if (!bare) recorded.service = service as unknown as Recorded["service"];
        return service;
      },
      shutdown: async () => { recorded.shutdowns++; },
    } as unknown as Responder;
  };
}

function recordingLogger(recorded: Recorded): Logger {
  const at = (level: string) => (message: string): void => { recorded.logs.push(`${level}: ${message}`); };
  return { debug: at("DEBUG"), info: at("INFO"), warning: at("WARNING"), error: at("ERROR"), critical: at("CRITICAL") };
}

test("announces _mandos._tcp on our port under the service name; stop() withdraws it once", async () => {
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: true, addressedLinks: () => ["eth0", "eth0/6", "eth0.10"] });
  assert.equal(await announcement.established, true);
  // Every link with an address, by name: ciao's own choice misses veth and VLAN interfaces.
  assert.deepEqual(recorded.responderOptions, { interface: ["eth0", "eth0.10"], advertiseIpv6: true });
  assert.deepEqual(recorded.serviceOptions, {
    name: "Mandos", type: "mandos", port: 4711, restrictedAddresses: ["eth0", "eth0.10"],
  });
  assert.equal(announcement.name, "Mandos");
  assert.ok(recorded.logs.includes("DEBUG: Adding Zeroconf service 'Mandos' of type '_mandos._tcp' ..."));
  await Promise.all([announcement.stop(), announcement.stop()]);
  assert.equal(recorded.destroys, 1);
  assert.equal(recorded.shutdowns, 1);
});

test("--interface limits the responder and the service to that interface; --no-ipv6 drops IPv6", async () => {
  const { recorded, announcement } = await fakeAnnouncement({ interface: "eth1", ipv6: false });
  assert.deepEqual(recorded.responderOptions, { interface: "eth1", disableIpv6: true });
  assert.deepEqual(recorded.serviceOptions, {
    name: "Mandos", type: "mandos", port: 4711, restrictedAddresses: ["eth1"], disabledIpv6: true,
  });
  await announcement.stop();
});

test("a failure to announce is logged and leaves the caller running", async () => {
  const recorded: Recorded = { logs: [], shutdowns: 0, destroys: 0 };
  const failing = await startAnnouncement({
    name: "Mandos", port: 4711, ipv6: true, logger: recordingLogger(recorded), systemBus: null,
    getResponder: fakeResponder(recorded, () => Promise.reject(new Error("bind EADDRINUSE 0.0.0.0:5353"))),
  });
  assert.equal(await failing.established, false);
  assert.ok(recorded.logs.includes("ERROR: Zeroconf: announcing 'Mandos' failed: bind EADDRINUSE 0.0.0.0:5353"), recorded.logs.join("\n"));
  await failing.stop();

  const throwing = await startAnnouncement({
    name: "Mandos", port: 4711, ipv6: true, logger: recordingLogger(recorded), systemBus: null,
    getResponder: () => { throw new Error("no usable network interface"); },
  });
  assert.equal(await throwing.established, false);
  assert.ok(recorded.logs.includes("ERROR: Zeroconf: cannot announce: no usable network interface"));
  await throwing.stop();
});

test("without --interface, a new interface with IPv4 is added by starting ciao afresh", async () => {
  let ipv4 = ["eth0"];
  let tick: () => void = () => {};
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: true, addressedLinks: () => ipv4, watch: (onTick) => { tick = onTick; return () => {}; } });
  assert.deepEqual(recorded.responderOptions, { interface: ["eth0"], advertiseIpv6: true });
  ipv4 = ["eth0", "wlan0"];
  tick();
  await new Promise(setImmediate); // the restart's promise chain (fakes resolve at once)
  assert.deepEqual(recorded.responderOptions, { interface: ["eth0", "wlan0"], advertiseIpv6: true });
  ipv4 = ["eth0", "wlan0"];
  tick();
  await new Promise(setImmediate);
  assert.equal(recorded.created, 2, "nothing changed, nothing restarted");
  await announcement.stop();
});

test("a link that loses an address family makes us start ciao afresh, which would keep a socket it fails on", async () => {
  let links = ["eth0", "eth0/6", "wlan0"];
  let tick: () => void = () => {};
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: true, addressedLinks: () => links, watch: (onTick) => { tick = onTick; return () => {}; } });
  links = ["eth0/6", "wlan0"];
  tick();
  await new Promise(setImmediate);
  assert.equal(recorded.created, 2);
  assert.ok(recorded.logs.includes("INFO: Zeroconf: eth0 no longer has IPv4; announcing again"), recorded.logs.join("\n"));
  assert.deepEqual(recorded.responderOptions, { interface: ["eth0", "wlan0"], advertiseIpv6: true });
  links = ["wlan0"];
  tick();
  await new Promise(setImmediate);
  assert.equal(recorded.created, 3, "an interface gone altogether too");
  assert.deepEqual(recorded.responderOptions, { interface: ["wlan0"], advertiseIpv6: true });
  await announcement.stop();
});

test("a packet ciao fails on is dropped and logged, at most once a minute, never thrown into its socket listener", async () => {
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: false, addressedLinks: () => ["eth0"] });
  const server = recorded.server!;
  assert.equal(server.handleMessage("eth0", Buffer.from("fine")), "handled");
  assert.equal(server.handleMessage("eth0", Buffer.from("boom")), undefined);
  assert.equal(server.handleMessage("eth0", Buffer.from("boom")), undefined);
  const warnings = recorded.logs.filter((l) => l.includes("mDNS packet"));
  assert.deepEqual(warnings, ["WARNING: Zeroconf: dropped an mDNS packet heard on eth0 that ciao failed on: IP address version must match"]);
  await announcement.stop();
});

test("a service name ciao cannot send as one DNS label is an error, not announced", async () => {
  const { unannounceableName } = await import("../src/main/zeroconf/announce.js");
  assert.equal(unannounceableName("Mandos"), undefined);
  assert.equal(unannounceableName("m".repeat(63)), undefined);
  assert.equal(unannounceableName("é".repeat(31)), undefined);
  for (const [name, reason] of [
    ["Lab.Mandos", "ciao would announce it as two DNS labels, split at the \".\""],
    ["m".repeat(64), "it is 64 bytes long, and a DNS label at most 63"],
    ["é".repeat(32), "it is 64 bytes long, and a DNS label at most 63"],
  ] as const) {
    const { recorded, announcement } = await fakeAnnouncement({ name, ipv6: true, addressedLinks: () => ["eth0"] });
    assert.equal(await announcement.established, false);
    assert.equal(recorded.created, undefined, "ciao never asked");
    assert.deepEqual(recorded.logs, [`ERROR: Zeroconf: cannot announce service name '${name}' with our own responder (ciao): ${reason}; not announcing`]);
    await announcement.stop();
  }
});

test("an interface that gains its first IPv4 address makes us start ciao afresh, which would not announce there", async () => {
  let ipv4: string[] = [];
  let tick: () => void = () => {};
  let unwatched = false;
  const { recorded, announcement } = await fakeAnnouncement({ interface: "eth1", ipv6: true, addressedLinks: () => ipv4, watch: (onTick) => { tick = onTick; return () => { unwatched = true; }; } });
  assert.ok(recorded.logs.includes("INFO: Zeroconf: no IPv4 or IPv6 address on eth1 yet; announcing once there is one"));
  tick();
  assert.equal(recorded.created, 1, "nothing changed, nothing restarted");
  ipv4 = ["eth1"];
  tick();
  await new Promise(setImmediate); // the restart's promise chain (fakes resolve at once)
  await announcement.stop();
  assert.ok(recorded.logs.includes("INFO: Zeroconf: eth1 now has IPv4; announcing again"));
  assert.equal(recorded.created, 2);
  assert.equal(recorded.destroys, 2, "the first service withdrawn, then the second on stop()");
  assert.equal(recorded.shutdowns, 2);
  assert.ok(unwatched);
  tick();
  assert.equal(recorded.created, 2, "nothing restarts after stop()");
});

test("a link that gains IPv6 is announced on afresh, and the log says which family", async () => {
  let links = ["eth1"];
  let tick: () => void = () => {};
  const { recorded, announcement } = await fakeAnnouncement({ interface: "eth1", ipv6: true, addressedLinks: () => links, watch: (onTick) => { tick = onTick; return () => {}; } });
  links = ["eth1", "eth1/6"];
  tick();
  await new Promise(setImmediate);
  assert.equal(recorded.created, 2);
  assert.ok(recorded.logs.includes("INFO: Zeroconf: eth1 now has IPv6; announcing again"), recorded.logs.join("\n"));
  assert.deepEqual(recorded.serviceOptions?.restrictedAddresses, ["eth1"]);
  await announcement.stop();
});

test("IPv6 repairs: ciao's 'eth0/6' socket is asked about as link eth0, and our own IPv6 packets are recognised", async () => {
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: true, addressedLinks: () => ["eth0", "eth0/6"] });
  assert.equal(await announcement.established, true);
  const service = recorded.service!;
  assert.equal(service.advertisesOnInterface("eth0/6"), true);
  assert.equal(service.advertisesOnInterface("eth0"), true);
  assert.equal(service.advertisesOnInterface("eth1/6"), false);
  assert.deepEqual(recorded.asked, ["eth0", "eth0", "eth1"]);
  const server = recorded.server!;
  // ciao asks under the link's name for a packet it filed under "eth0/6".
  assert.equal(server.checkIfPacketWasPreviouslySentFromUs("eth0", Buffer.from("ours")), true);
  assert.equal(server.checkIfPacketWasPreviouslySentFromUs("eth0", Buffer.from("a rival's")), false);
  assert.equal(server.checkIfPacketWasPreviouslySentFromUs("eth1", Buffer.from("ours")), false);
  assert.ok(!recorded.logs.some((l) => l.includes("IPv6")), recorded.logs.join("\n"));
  await announcement.stop();
});

test("--no-ipv6 leaves ciao's internals alone", async () => {
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: false, addressedLinks: () => ["eth0"] });
  assert.equal(recorded.service!.advertisesOnInterface("eth0/6"), false, "not mapped to eth0");
  assert.equal(recorded.server!.checkIfPacketWasPreviouslySentFromUs("eth0", Buffer.from("ours")), false, "not looked up under eth0/6");
  await announcement.stop();
});

test("a ciao without those internals: a warning, and the IPv4 announcement goes on", async () => {
  const { recorded, announcement } = await fakeAnnouncement({ ipv6: true, addressedLinks: () => ["eth0", "eth0/6"], bare: true });
  assert.equal(await announcement.established, true);
  assert.ok(recorded.logs.includes("WARNING: Zeroconf: this ciao cannot announce over IPv6 on chosen interfaces; IPv4 only"), recorded.logs.join("\n"));
  await announcement.stop();
});
