// Live places: a page that signs in, lists places near a point with Relay
// pagination (first/after, "Load more") and keeps them, and the user's own
// reviews, live over graphql-ws, resuming with `after:` (the last event's
// cursor) whenever the socket drops. Plain browser JavaScript, no build step:
// `graphqlWs` is the graphql-ws package's UMD build, vendored in vendor/.
'use strict';

const PAGE_SIZE = 5;
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  near: null,
  endCursor: null,
  client: null,
  socket: null,
  // While true (the debug hook's disconnect()), dropped subscriptions wait
  // instead of resubscribing, so a test can make changes while offline.
  paused: false,
  subscriptions: [],
  events: 0,
};

async function graphql(query, variables = {}) {
  const headers = { 'content-type': 'application/json' };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const body = await response.json();
  if (body.errors?.length) {
    const e = body.errors[0];
    throw new Error(`${e.extensions?.code ?? 'ERROR'}: ${e.message}`);
  }
  return body.data;
}

function setStatus(text, stateName) {
  $('status').textContent = text;
  $('status').dataset.state = stateName;
}

function showError(error) {
  $('error').textContent = error ? String(error.message ?? error) : '';
}

// Great-circle distance in km: the `places` query has no distance filter
// (only `recommendations` and the `placeChanged` subscription take a
// point), so the page keeps the places of each page that are in range.
function distanceKm(a, b) {
  const rad = (d) => (d * Math.PI) / 180;
  const dLat = rad(b.lat - a.lat);
  const dLng = rad(b.lng - a.lng);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLng / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.sqrt(h));
}

const inRange = (place) => distanceKm(state.near, place) <= state.near.radiusKm;

function placeItem(place) {
  let li = document.querySelector(`#places li[data-id="${CSS.escape(place.id)}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.id = place.id;
    // The place's own key (its Google id), for people and tests reading the page.
    li.dataset.rowId = place.rowId;
    $('places').append(li);
  }
  const rating = place.rating == null ? 'no rating' : `rated ${place.rating}`;
  li.textContent = `${place.name} (${place.category ?? 'uncategorised'}, ${rating})`;
  return li;
}

function flash(li) {
  li.classList.add('fresh');
  setTimeout(() => li.classList.remove('fresh'), 1500);
}

function reviewItem(review) {
  let li = document.querySelector(`#reviews li[data-id="${CSS.escape(review.id)}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.id = review.id;
    $('reviews').prepend(li);
  }
  li.textContent = `${review.place.name}: ${review.rating}${review.comment ? ` (${review.comment})` : ''}`;
  return li;
}

// `id` is the global id every list and event agree on; items are keyed by it.
const PLACE_FIELDS = 'id rowId name lat lng category rating';
const REVIEW_FIELDS = 'id rating comment place { id name }';

async function loadMore() {
  const data = await graphql(
    `query Places($first: Int!, $after: String) {
      places(first: $first, after: $after, orderBy: NAME_ASC) {
        edges { node { ${PLACE_FIELDS} } }
        pageInfo { hasNextPage endCursor }
      }
    }`,
    { first: PAGE_SIZE, after: state.endCursor },
  );
  for (const { node } of data.places.edges) if (inRange(node)) placeItem(node);
  state.endCursor = data.places.pageInfo.endCursor ?? state.endCursor;
  $('more').hidden = !data.places.pageInfo.hasNextPage;
}

// One subscription that survives dropped sockets: every event's cursor is
// kept, and after a drop the subscription is sent again with `after` set
// to it, so the server first replays what happened while we were away.
// graphql-ws's own retry would resend the first variables (and `after`
// with them), so its retries are off and this does the resubscribing.
function subscribeResuming(name, query, variables, onEvent) {
  const sub = { after: variables.after ?? null, active: false, retry: 0 };
  const start = () => {
    // Once per drop: both a pending retry and reconnect() may call this.
    if (state.paused || sub.active) return;
    sub.active = true;
    state.client.subscribe(
      { query, variables: { ...variables, after: sub.after } },
      {
        next: (result) => {
          if (result.errors?.length) return showError(result.errors[0].message);
          const event = result.data[name];
          sub.after = event.cursor;
          sub.retry = 0;
          state.events += 1;
          $('events').textContent = `${state.events} events`;
          onEvent(event);
        },
        error: (error) => {
          sub.active = false;
          // GraphQL errors (an array) will not go away by retrying.
          if (Array.isArray(error)) {
            setStatus('stopped', 'error');
            return showError(error[0]?.message ?? error);
          }
          setStatus('offline, reconnecting', 'offline');
          const delay = Math.min(250 * 2 ** sub.retry++, 10000);
          setTimeout(start, delay);
        },
        complete: () => {
          sub.active = false;
        },
      },
    );
  };
  sub.start = start;
  state.subscriptions.push(sub);
  start();
}

async function signIn(form) {
  showError('');
  const fields = new FormData(form);
  state.near = {
    lat: Number(fields.get('lat')),
    lng: Number(fields.get('lng')),
    radiusKm: Number(fields.get('radiusKm')),
  };
  const data = await graphql(
    'mutation SignIn($input: SignInInput!) { signIn(input: $input) { token user { username } } }',
    { input: { login: fields.get('login'), password: fields.get('password') } },
  );
  state.token = data.signIn.token;
  // The cursor first: whatever changes after it reaches the subscriptions
  // even if it happens while the lists below load.
  const start = await graphql(
    `query Start { changeCursor myReviews(first: ${PAGE_SIZE}) { edges { node { ${REVIEW_FIELDS} } } } }`,
  );
  for (const { node } of [...start.myReviews.edges].reverse()) reviewItem(node);
  await loadMore();
  connect(start.changeCursor);
}

function connect(after) {
  state.client = graphqlWs.createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`,
    connectionParams: () => ({ Authorization: `Bearer ${state.token}` }),
    lazy: true,
    retryAttempts: 0,
    on: {
      connected: (socket) => {
        state.socket = socket;
        setStatus('live', 'live');
      },
      closed: () => {
        state.socket = null;
        if (state.paused) setStatus('offline', 'offline');
      },
    },
  });
  subscribeResuming(
    'placeChanged',
    `subscription Places($near: NearInput!, $after: String) {
      placeChanged(near: $near, after: $after) { operation cursor place { ${PLACE_FIELDS} } }
    }`,
    { near: state.near, after },
    ({ operation, place }) => {
      const existing = document.querySelector(`#places li[data-id="${CSS.escape(place.id)}"]`);
      if (operation === 'DELETED' || !inRange(place)) return existing?.remove();
      flash(placeItem(place));
    },
  );
  subscribeResuming(
    'myReviewChanged',
    `subscription MyReviews($after: String) {
      myReviewChanged(after: $after) { operation cursor review { ${REVIEW_FIELDS} } }
    }`,
    { after },
    ({ operation, review }) => {
      if (operation === 'DELETED') {
        return document.querySelector(`#reviews li[data-id="${CSS.escape(review.id)}"]`)?.remove();
      }
      flash(reviewItem(review));
    },
  );
}

$('sign-in').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn(e.target).catch(showError);
});
$('more').addEventListener('click', () => loadMore().catch(showError));

// For tests and for trying the resume by hand from the console:
// livePlaces.disconnect() drops the socket and holds the subscriptions;
// livePlaces.reconnect() resubscribes from each one's last cursor.
window.livePlaces = {
  disconnect() {
    state.paused = true;
    state.socket?.close(4000, 'disconnected by livePlaces.disconnect()');
  },
  reconnect() {
    state.paused = false;
    for (const sub of state.subscriptions) sub.start();
  },
};
