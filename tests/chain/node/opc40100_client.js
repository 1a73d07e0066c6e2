// An independent OPC UA client (node-opcua) against the line's server: finds the vision system by OPC 40100's
// BrowseNames and types, reads its state machine, subscribes to ResultReadyEventType and runs PARTS trigger
// handshakes. Prints one JSON object. Usage: node opc40100_client.js ENDPOINT USER PASSWORD PARTS
"use strict";
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, UserTokenType, AttributeIds, DataType, makeBrowsePath,
  ClientSubscription, ClientMonitoredItem, TimestampsToReturn, constructEventFilter, resolveNodeId, BrowseDirection,
} = require("node-opcua-client");

const [endpoint, userName, password, partsText] = process.argv.slice(2);
const MV = "http://opcfoundation.org/UA/MachineVision";
const LINE = "urn:wafer-inspect:vision";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const client = OPCUAClient.create({
    endpointMustExist: false, securityMode: MessageSecurityMode.None, securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 600, initialDelay: 200, maxDelay: 500 },
  });
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  const namespaces = await session.readNamespaceArray();
  const mv = namespaces.indexOf(MV), line = namespaces.indexOf(LINE);
  const node = async (path) => {
    const found = await session.translateBrowsePath(makeBrowsePath("RootFolder", path));
    if (!found.targets || !found.targets.length) throw new Error(`no node at ${path}: ${found.statusCode}`);
    return found.targets[0].targetId;
  };
  const system = await node(`/Objects/${mv}:VisionSystem`);
  const typeRefs = await session.browse({ nodeId: system, browseDirection: BrowseDirection.Forward,
    referenceTypeId: "HasTypeDefinition", includeSubtypes: true, resultMask: 63 });
  const type = typeRefs.references[0];
  const stateNode = await node(`/Objects/${mv}:VisionSystem/${mv}:VisionStateMachine/CurrentState`);
  const state = (await session.read({ nodeId: stateNode, attributeId: AttributeIds.Value })).value.value.text;

  const subscription = ClientSubscription.create(session, { requestedPublishingInterval: 20,
    requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 600, publishingEnabled: true, priority: 1 });
  const events = [];
  const filter = constructEventFilter([`${mv}:PartId`, `${mv}:ResultState`, `${mv}:ResultId`, "EventType"],
    [resolveNodeId(`ns=${mv};i=1024`)]);
  const item = ClientMonitoredItem.create(subscription, { nodeId: system, attributeId: AttributeIds.EventNotifier },
    { samplingInterval: 0, discardOldest: false, queueSize: 10000, filter }, TimestampsToReturn.Both);
  item.on("changed", (fields) => events.push({
    partId: fields[0].value ? Number(fields[0].value.id) : null, resultState: fields[1].value,
    resultId: fields[2].value ? Number(fields[2].value.id) : null, eventType: fields[3].value.toString() }));
  await sleep(300);

  const trigger = await node(`/Objects/${line}:VisionSystem/${line}:Trigger`);
  const ready = await node(`/Objects/${line}:VisionSystem/${line}:ResultReady`);
  const partId = await node(`/Objects/${line}:VisionSystem/${line}:Result/${line}:PartId`);
  const verdict = await node(`/Objects/${line}:VisionSystem/${line}:Result/${line}:Verdict`);
  const write = (value) => session.write({ nodeId: trigger, attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Boolean, value } } });
  const read = async (nodeId) => (await session.read({ nodeId, attributeId: AttributeIds.Value })).value.value;
  const results = [];
  for (let i = 0; i < Number(partsText); i++) {
    await write(true);
    const deadline = Date.now() + 20000;
    while (!(await read(ready))) {
      if (Date.now() > deadline) throw new Error(`no result within 20 s of trigger ${i}`);
      await sleep(2);
    }
    results.push({ partId: await read(partId), verdict: await read(verdict) });
    await write(false);
    while (await read(ready)) await sleep(2);
  }
  const deadline = Date.now() + 10000;
  while (events.length < results.length && Date.now() < deadline) await sleep(20);
  await subscription.terminate();
  await session.close();
  await client.disconnect();
  console.log(JSON.stringify({ type: type.browseName.toString(), typeNamespace: namespaces[type.nodeId.namespace],
    state, results, events }));
}

main().catch((error) => { console.error(String(error && error.stack || error)); process.exit(1); });
