// One gRPC method of the stations service, each iteration on its own prepared
// request (a card of its own, a fresh request id), written by tools/bench/k6.py.
//
// CALLS     JSON file: a list of {"request": {...}, "token": "..."} ("" for none)
// METHOD    e.g. ScanCard
// ADDRESS   host:port
// PROTOS    the repository's protos/ directory
// MODE      "closed": VUS calls in flight until the calls run out or SECONDS pass;
//           "open": RATE calls a second for SECONDS, whether or not the last answered
import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';

const calls = new SharedArray('calls', () => JSON.parse(open(__ENV.CALLS)));
const seconds = `${__ENV.SECONDS}s`;

function scenario() {
  if (__ENV.MODE === 'closed') {
    return {
      executor: 'shared-iterations',
      vus: Number(__ENV.VUS),
      iterations: calls.length,
      maxDuration: seconds,
    };
  }
  const rate = Number(__ENV.RATE);
  return {
    executor: 'constant-arrival-rate',
    // k6 takes a whole number of calls per time unit: per 100 s keeps two decimals.
    rate: Math.round(rate * 100),
    timeUnit: '100s',
    duration: seconds,
    // Enough VUs for calls answered within 100 ms; more are started if they are not.
    preAllocatedVUs: Math.max(4, Math.ceil(rate / 10)),
    maxVUs: Math.max(50, Math.ceil(rate)),
  };
}

export const options = { scenarios: { calls: scenario() } };

const client = new grpc.Client();
client.load([__ENV.PROTOS], 'kanban/stations/v1/stations.proto');
const method = `kanban.stations.v1.StationsService/${__ENV.METHOD}`;
let connected = false;

export default function () {
  const index = exec.scenario.iterationInTest;
  if (index >= calls.length) {
    return; // an open loop faster than the cards prepared for it: seen as fewer calls
  }
  if (!connected) {
    client.connect(__ENV.ADDRESS, { plaintext: true });
    connected = true;
  }
  const call = calls[index];
  const params = { discardResponseMessage: true };
  if (call.token) {
    params.metadata = { authorization: `Bearer ${call.token}` };
  }
  // Not a tag: metadata makes no time series of its own per card.
  exec.vu.metrics.metadata.card = call.request.card_code;
  client.invoke(method, call.request, params);
  delete exec.vu.metrics.metadata.card;
}
