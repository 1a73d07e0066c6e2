"""The station as an OPC 40100 (OPC UA for Machine Vision) vision system: the published information model loaded
into the line's OPC UA server and one instance of its ``VisionSystemType`` kept current.

The NodeSet (``nodesets/Opc.Ua.MachineVision.NodeSet2.xml``, the OPC Foundation's, unchanged) brings the
specification's namespace, types and data types. The instance ``VisionSystem`` (BrowseName in that namespace,
type ``VisionSystemType``) carries:

- ``VisionStateMachine.CurrentState`` (and its ``Id``): Preoperational, Operational, Halted or Error, the
  specification's states, as the line's own ``State``;
- the methods ``Halt`` and ``Reset`` of ``VisionStateMachine`` and ``StartSingleJob``, ``StartContinuous``,
  ``Stop`` and ``Abort`` of its ``AutomaticModeStateMachine``: ``StartSingleJob`` grabs and inspects one part
  (as a PLC trigger does) and returns its ``JobId``; ``StartContinuous`` and ``Reset`` put the system in
  Operational, ``Stop``, ``Abort`` and ``Halt`` in Halted; each returns ``Error`` 0;
- a ``ResultReadyEventType`` event per committed part, from the instance: ``ResultId`` (the database's result
  id), ``PartId`` (the frame counter), ``JobId``, ``InternalRecipeId`` (the recipe's name and sha256),
  ``ResultState`` (1 pass, 2 review, -1 fail, -2 error: positive good, negative bad), ``IsPartial`` false,
  ``IsSimulated`` (a ``sim:`` camera), ``CreationTime``, ``ProcessingTimes`` and ``ResultContent`` (verdict,
  reason and the defect classes as text).

Recipe and configuration management, result retrieval by id and file transfer, which the type also declares,
are not served: their methods answer ``BadNotImplemented``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncua import Server, ua

NODESET = Path(__file__).with_name("nodesets") / "Opc.Ua.MachineVision.NodeSet2.xml"
MV_NAMESPACE = "http://opcfoundation.org/UA/MachineVision"
VISION_SYSTEM_TYPE, RESULT_READY_EVENT_TYPE = 1003, 1024
STATE_OBJECTS = {"Preoperational": 5028, "Halted": 5029, "Error": 5030, "Operational": 5031}
"""The states of ``VisionStateMachineType`` (their NodeIds in the specification's namespace)."""
RESULT_STATES = {"pass": 1, "review": 2, "fail": -1, "error": -2}


@dataclass
class VisionSystemModel:
    """The OPC 40100 instance of a running server, with the nodes the line writes."""

    server: Server
    index: int
    system: Any
    current_state: Any
    current_state_id: Any
    events: Any

    async def set_state(self, state: str) -> None:
        """Mirror the line's state into ``VisionStateMachine.CurrentState``."""
        await self.current_state.write_value(ua.LocalizedText(state))
        await self.current_state_id.write_value(ua.NodeId(STATE_OBJECTS[state], self.index))

    async def result_ready(self, *, result_id: int, part_id: int, recipe: str, verdict: str, reason: str,
                           defect_classes: list[str], simulated: bool, latency_ms: float) -> None:
        """Raise ``ResultReadyEventType`` for a committed part."""
        now = datetime.now(UTC)
        event = self.events.event
        event.ResultId = ua.ResultIdDataType(Id=str(result_id))
        event.PartId = ua.PartIdDataType(Id=str(part_id), Description=ua.LocalizedText(verdict))
        event.JobId = ua.JobIdDataType(Id=f"part-{part_id}")
        event.InternalRecipeId = ua.RecipeIdInternalDataType(Id=recipe)
        event.ResultState = RESULT_STATES.get(verdict, -2)
        event.IsPartial, event.IsSimulated, event.CreationTime = False, simulated, now
        event.ProcessingTimes = ua.ProcessingTimesDataType(
            StartTime=now - timedelta(milliseconds=latency_ms), EndTime=now, ProcessingDuration=latency_ms)
        event.ResultContent = [ua.Variant(text, ua.VariantType.String) for text in (verdict, reason, *defect_classes)]
        await self.events.trigger(message=f"part {part_id}: {verdict} ({reason})")


async def build_vision_system(server: Server, *, on_state: Any, on_single_job: Any) -> VisionSystemModel:
    """Load the OPC 40100 NodeSet into ``server`` (initialised, not yet started) and instantiate the vision system.

    Parameters
    ----------
    server : asyncua.Server
        The line's server.
    on_state : async callable
        Called with ``"Operational"`` or ``"Halted"`` (the line's own Start and Stop) by the state methods.
    on_single_job : async callable
        Called by ``StartSingleJob``: triggers one part and returns its job id text, or None when the system
        cannot take a job now (the call then answers ``BadInvalidState``).

    Returns
    -------
    VisionSystemModel
        The instance and the nodes the line keeps current.
    """
    await server.import_xml(str(NODESET))
    index = await server.get_namespace_index(MV_NAMESPACE)
    await server.load_data_type_definitions()
    system = await server.nodes.objects.add_object(index, "VisionSystem",
                                                   objecttype=ua.NodeId(VISION_SYSTEM_TYPE, index))
    machine = await system.get_child(f"{index}:VisionStateMachine")
    automatic = await machine.get_child(f"{index}:AutomaticModeStateMachine")
    current = await machine.get_child("0:CurrentState")
    current_id = await current.get_child("0:Id")

    no_error = ua.Variant(0, ua.VariantType.Int32)

    def state_method(state: str) -> Any:
        async def call(parent: ua.NodeId, *arguments: ua.Variant) -> list[ua.Variant]:
            await on_state(state)
            return [no_error]
        return call

    def job(identifier: str) -> ua.Variant:
        return ua.Variant(ua.JobIdDataType(Id=identifier), ua.VariantType.ExtensionObject)

    async def single_job(parent: ua.NodeId, *arguments: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
        started = await on_single_job()
        return ua.StatusCode(ua.StatusCodes.BadInvalidState) if started is None else [job(started), no_error]

    async def continuous(parent: ua.NodeId, *arguments: ua.Variant) -> list[ua.Variant]:
        await on_state("Operational")
        return [job("continuous"), no_error]

    links = [(machine, "Halt", state_method("Halted")), (machine, "Reset", state_method("Operational")),
             (automatic, "Stop", state_method("Halted")), (automatic, "Abort", state_method("Halted")),
             (automatic, "StartSingleJob", single_job), (automatic, "StartContinuous", continuous)]
    for parent, name, callback in links:
        server.link_method(await parent.get_child(f"{index}:{name}"), callback)
    events = await server.get_event_generator(ua.NodeId(RESULT_READY_EVENT_TYPE, index), system)
    # The type's event fields hold no values, so asyncua cannot tell their variant types: say them.
    events.event.data_types.update({
        "CreationTime": ua.VariantType.DateTime, "IsPartial": ua.VariantType.Boolean,
        "IsSimulated": ua.VariantType.Boolean, "ResultState": ua.VariantType.Int32,
        "ResultContent": ua.VariantType.Variant, "InternalRecipeId": ua.VariantType.ExtensionObject,
        "ExternalRecipeId": ua.VariantType.ExtensionObject, "InternalConfigurationId": ua.VariantType.ExtensionObject,
        "ExternalConfigurationId": ua.VariantType.ExtensionObject})
    model = VisionSystemModel(server, index, system, current, current_id, events)
    await model.set_state("Preoperational")
    return model
