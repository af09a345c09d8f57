// What the pages share: the engine's status and the known event types, filled
// in once by app.js at start.
export const state = { status: null, network: 'online', eventTypes: [] };
