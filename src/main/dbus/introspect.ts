// org.freedesktop.DBus.Introspectable.Introspect's XML (D-Bus specification,
// "Introspection Data Format"): the interfaces of one object, with every
// argument name, property access and annotation the reference shows, and
// its child nodes; and the bare node libdbus answers for a path without
// an object.

import type { Annotations, ArgSpec, InterfaceSpec } from "./interfaces.js";

const DOCTYPE =
  '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n' +
  ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n';

function escape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function annotationLines(annotations: Annotations | undefined, indent: string): string[] {
  return Object.entries(annotations ?? {}).map(
    ([name, value]) => `${indent}<annotation name="${escape(name)}" value="${escape(value)}"/>`,
  );
}

function argLine(arg: ArgSpec, direction: "in" | "out" | null, indent: string): string {
  const dir = direction ? ` direction="${direction}"` : "";
  const name = arg.name ? ` name="${escape(arg.name)}"` : "";
  return `${indent}<arg${dir} type="${escape(arg.type)}"${name}/>`;
}

/** One element with children lines, or self-closed when it has none. */
function element(open: string, children: string[], indent: string, tag: string): string[] {
  if (children.length === 0) return [`${indent}<${open}/>`];
  return [`${indent}<${open}>`, ...children, `${indent}</${tag}>`];
}

function interfaceLines(spec: InterfaceSpec): string[] {
  const lines: string[] = [];
  for (const m of spec.methods) {
    const children = [
      ...m.in.map((a) => argLine(a, "in", "      ")),
      ...m.out.map((a) => argLine(a, "out", "      ")),
      ...annotationLines(m.annotations, "      "),
    ];
    lines.push(...element(`method name="${escape(m.name)}"`, children, "    ", "method"));
  }
  for (const s of spec.signals) {
    const children = [...s.args.map((a) => argLine(a, null, "      ")), ...annotationLines(s.annotations, "      ")];
    lines.push(...element(`signal name="${escape(s.name)}"`, children, "    ", "signal"));
  }
  for (const p of spec.properties) {
    const open = `property name="${escape(p.name)}" type="${escape(p.type)}" access="${p.access}"`;
    lines.push(...element(open, annotationLines(p.annotations, "      "), "    ", "property"));
  }
  lines.push(...annotationLines(spec.annotations, "    "));
  return element(`interface name="${escape(spec.name)}"`, lines, "  ", "interface");
}

/** The introspection document of the object at `path`. */
export function introspectionXml(path: string, interfaces: readonly InterfaceSpec[], children: readonly string[]): string {
  const body = [
    ...interfaces.flatMap(interfaceLines),
    ...children.map((child) => `  <node name="${escape(child)}"/>`),
  ];
  return DOCTYPE + element(`node name="${escape(path)}"`, body, "", "node").join("\n") + "\n";
}

/**
 * libdbus's answer to Introspect on a path where nothing is exported (its
 * object tree's default, which the reference's dbus-python leaves in
 * place): no interfaces, the child nodes, byte for byte as libdbus
 * writes it.
 */
export function bareNodeXml(children: readonly string[]): string {
  const doctype =
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n' +
    '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n';
  return `${doctype}<node>\n${children.map((child) => `  <node name="${escape(child)}"/>\n`).join("")}</node>\n`;
}
