// A stand-in for avahi-daemon on a private bus: it owns
// org.freedesktop.Avahi and answers the calls the reference's AvahiService
// (and our src/main/zeroconf/avahi.ts) make, as the test scripts, so that the
// paths a real avahi-daemon seldom takes (failures, server collisions, a
// lost bus) can be driven. It sends nothing on any network.

import { BusConnection, type WireMessage } from "../../src/main/dbus/connection.js";
import type { WireValue } from "../../src/main/dbus/values.js";
import { alternativeServiceName } from "../../src/main/zeroconf/alternative-name.js";

export const GROUP_PATH = "/Client1/EntryGroup1";

export interface FakeAvahiScript {
  /** GetState's answer: 2, running, unless told. */
  state?: number;
  /** AddService's D-Bus error name for the name given, or undefined to accept it. */
  addServiceError?: (name: string) => string | undefined;
  /** After Commit, signal the group REGISTERING then ESTABLISHED (default true). */
  establish?: boolean;
  /** Once it owns its name, signal the server REGISTERING then RUNNING, as a starting avahi-daemon does. */
  starting?: boolean;
}

/** One call as received: member and body. */
export interface FakeCall {
  readonly member: string;
  readonly path: string;
  readonly body: readonly WireValue[];
}

export class FakeAvahi {
  readonly calls: FakeCall[] = [];
  readonly #bus: BusConnection;
  readonly #script: FakeAvahiScript;
  readonly #waiters = new Set<() => void>();

  private constructor(bus: BusConnection, script: FakeAvahiScript) {
    this.#bus = bus;
    this.#script = script;
  }

  static async start(address: string, script: FakeAvahiScript = {}): Promise<FakeAvahi> {
    const bus = await BusConnection.connect(address);
    const fake = new FakeAvahi(bus, script);
    bus.onMethodCall((call) => fake.#answer(call));
    await bus.requestName("org.freedesktop.Avahi");
    if (script.starting) {
      fake.serverState(1);
      fake.serverState(2);
    }
    return fake;
  }

  /** Resolves with the `count`th call (1-based) of `member`, now or when it comes. */
  waitForCall(member: string, count = 1, ms = 20_000): Promise<FakeCall> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.calls.filter((c) => c.member === member)[count - 1];
        if (!found) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no call #${count} of ${member} within ${ms} ms; calls: ${this.calls.map((c) => c.member).join(", ")}`));
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }

  serverState(state: number, error = ""): void {
    this.#bus.signal("/", "org.freedesktop.Avahi.Server", "StateChanged", "is", [state, error]);
  }

  groupState(state: number, error = ""): void {
    this.#bus.signal(GROUP_PATH, "org.freedesktop.Avahi.EntryGroup", "StateChanged", "is", [state, error]);
  }

  close(): void {
    this.#bus.close();
  }

  #answer(call: WireMessage): void {
    const member = call.member ?? "";
    const bus = this.#bus;
    if (call.interface === "org.freedesktop.DBus.Introspectable") {
      bus.replyError(call, "org.freedesktop.DBus.Error.UnknownMethod", "no introspection here");
      return;
    }
    this.calls.push({ member, path: call.path ?? "", body: call.body ?? [] });
    for (const check of [...this.#waiters]) check();
    switch (member) {
      case "GetState": return bus.reply(call, "i", [this.#script.state ?? 2]);
      case "EntryGroupNew": return bus.reply(call, "o", [GROUP_PATH]);
      case "GetAlternativeServiceName": return bus.reply(call, "s", [alternativeServiceName(String(call.body?.[0]))]);
      case "GetNetworkInterfaceIndexByName": return bus.reply(call, "i", [7]);
      case "AddService": {
        const error = this.#script.addServiceError?.(String(call.body?.[3]));
        if (error) return bus.replyError(call, error, "Refused by the script");
        return bus.reply(call, "", []);
      }
      case "Commit":
        bus.reply(call, "", []);
        if (this.#script.establish ?? true) {
          this.groupState(1);
          this.groupState(2);
        }
        return;
      case "Reset":
      case "Free":
        return bus.reply(call, "", []);
      default:
        return bus.replyError(call, "org.freedesktop.DBus.Error.UnknownMethod", `no ${member} here`);
    }
  }
}
