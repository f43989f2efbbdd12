import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADD_CLOUD_LABEL, applyPreset, cloudBackends, cloudEnabled, currentPreset, routingItems, toggleCloud } from '../src/presets';

const withCloud = {
  local: { model: 'm' },
  backends: { openai: { base_url: 'https://a/v1' }, claude: { protocol: 'anthropic', base_url: 'https://b' } },
  routing: { exclude: ['**/.env'] },
};

describe('routing presets', () => {
  it('lists cloud backends in config order', () => {
    assert.deepEqual(cloudBackends(withCloud), ['openai', 'claude']);
    assert.deepEqual(cloudBackends({}), []);
  });

  it('cloud-first puts every cloud backend before local and switches cloud on, completions stay local', () => {
    const c = applyPreset(withCloud, 'cloud-first');
    assert.deepEqual(c.routing, { exclude: ['**/.env'], cloud: true, chat: ['openai', 'claude', 'local'], complete: ['local'], inline: ['local'] });
    assert.equal(currentPreset(c), 'cloud-first');
  });

  it('local only switches cloud off and keeps other keys', () => {
    const c = applyPreset(applyPreset(withCloud, 'cloud-first'), 'local');
    assert.deepEqual(c.routing, { exclude: ['**/.env'], cloud: false, chat: ['local'], complete: ['local'], inline: ['local'] });
    assert.deepEqual(c.local, { model: 'm' });
    assert.equal(currentPreset(c), 'local');
  });

  it('an empty config is the local preset (the daemon defaults)', () => {
    assert.equal(currentPreset({}), 'local');
  });

  it('does not modify its input', () => {
    const before = JSON.stringify(withCloud);
    applyPreset(withCloud, 'local-first');
    toggleCloud(withCloud);
    assert.equal(JSON.stringify(withCloud), before);
  });

  it('toggleCloud flips the master switch', () => {
    assert.equal(cloudEnabled(withCloud), false);
    const on = toggleCloud(withCloud);
    assert.equal(cloudEnabled(on), true);
    assert.equal(cloudEnabled(toggleCloud(on)), false);
  });

  it('without a cloud backend the picker says why the cloud presets are missing and offers the setting', () => {
    const items = routingItems({});
    assert.deepEqual(items.map((i) => [i.label, i.description, i.id]), [
      ['Local only', '(current)', 'local'],
      [ADD_CLOUD_LABEL, undefined, 'settings'],
    ]);
    assert.match(items[1]?.detail ?? '', /appear once mlxd\.config has a cloud backend/);
  });

  it('with a cloud backend the picker lists every preset and no settings row', () => {
    const items = routingItems({ backends: { openai: {} }, routing: { cloud: true, chat: ['openai', 'local'] } });
    assert.deepEqual(items.map((i) => [i.id, i.description]), [
      ['local', undefined],
      ['local-first', undefined],
      ['cloud-first', '(current)'],
    ]);
  });

  it('a hand-written routing matches no preset', () => {
    assert.equal(currentPreset({ ...withCloud, routing: { cloud: true, chat: ['claude'] } }), undefined);
  });
});
