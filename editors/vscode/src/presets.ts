// Routing presets and the cloud switch, as pure edits of the `mlxd.config` object.
// The settings stay the single source of truth: the extension writes the edited object back
// and the change reaches the daemon through workspace/didChangeConfiguration.

import { isPlainObject } from './settings';

export type PresetId = 'local' | 'local-first' | 'cloud-first';

export interface Preset {
  id: PresetId;
  label: string;
  detail: string;
  /** Presets that use cloud backends make no sense (and are hidden) when none is configured. */
  needsCloud: boolean;
}

export const PRESETS: readonly Preset[] = [
  { id: 'local', label: 'Local only', detail: 'Everything on the local model; nothing leaves the machine.', needsCloud: false },
  { id: 'local-first', label: 'Local first, cloud fallback', detail: 'Chat tries the local model, then cloud backends.', needsCloud: true },
  { id: 'cloud-first', label: 'Cloud first, local fallback', detail: 'Chat tries cloud backends, then the local model; completions stay local.', needsCloud: true },
];

function copy(config: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
}

/** Names of the configured non-local backends, in config order. */
export function cloudBackends(config: Record<string, unknown>): string[] {
  const b = config.backends;
  return isPlainObject(b) ? Object.keys(b).filter((n) => n !== 'local') : [];
}

export function cloudEnabled(config: Record<string, unknown>): boolean {
  const r = config.routing;
  return isPlainObject(r) && r.cloud === true;
}

/** Returns a new config with the preset's routing applied (other keys untouched). */
export function applyPreset(config: Record<string, unknown>, id: PresetId): Record<string, unknown> {
  const out = copy(config);
  const cloud = cloudBackends(out);
  const routing = isPlainObject(out.routing) ? out.routing : {};
  switch (id) {
    case 'local':
      Object.assign(routing, { cloud: false, chat: ['local'], complete: ['local'], inline: ['local'] });
      break;
    case 'local-first':
      Object.assign(routing, { cloud: cloud.length > 0, chat: ['local', ...cloud], complete: ['local'], inline: ['local'] });
      break;
    case 'cloud-first':
      Object.assign(routing, { cloud: cloud.length > 0, chat: [...cloud, 'local'], complete: ['local'], inline: ['local'] });
      break;
  }
  out.routing = routing;
  return out;
}

export interface RoutingItem {
  label: string;
  description?: string;
  detail: string;
  /** A preset to apply, or 'settings': open the `mlxd.config` setting to add a cloud backend. */
  id: PresetId | 'settings';
}

export const ADD_CLOUD_LABEL = '$(settings-gear) Add a cloud backend…';

/** The rows of "Switch routing preset…": the presets that fit the config, the current one
 * marked; without a cloud backend, a row that says why the cloud presets are missing and opens
 * the setting where one is added. */
export function routingItems(config: Record<string, unknown>): RoutingItem[] {
  const hasCloud = cloudBackends(config).length > 0;
  const current = currentPreset(config);
  const items: RoutingItem[] = PRESETS.filter((p) => hasCloud || !p.needsCloud).map((p) => ({
    label: p.label,
    description: p.id === current ? '(current)' : undefined,
    detail: p.detail,
    id: p.id,
  }));
  if (!hasCloud) {
    items.push({
      label: ADD_CLOUD_LABEL,
      detail:
        'The presets "Local first, cloud fallback" and "Cloud first, local fallback" appear once ' +
        'mlxd.config has a cloud backend (backends.NAME). Opens the setting.',
      id: 'settings',
    });
  }
  return items;
}

/** Which preset the config's routing matches, if any. */
export function currentPreset(config: Record<string, unknown>): PresetId | undefined {
  for (const p of PRESETS) {
    const applied = applyPreset(config, p.id);
    if (JSON.stringify(routingView(applied)) === JSON.stringify(routingView(config))) {
      return p.id;
    }
  }
  return undefined;
}

function routingView(config: Record<string, unknown>): unknown {
  const r = isPlainObject(config.routing) ? config.routing : {};
  // Missing keys mean the daemon's defaults: local only, cloud off.
  return {
    cloud: r.cloud ?? false,
    chat: r.chat ?? ['local'],
    complete: r.complete ?? ['local'],
    inline: r.inline ?? ['local'],
  };
}

/** Returns a new config with the cloud master switch flipped. */
export function toggleCloud(config: Record<string, unknown>): Record<string, unknown> {
  const out = copy(config);
  const routing = isPlainObject(out.routing) ? out.routing : {};
  routing.cloud = !cloudEnabled(config);
  out.routing = routing;
  return out;
}
