-- Argo CD health of a Batchpilot InferenceService (batchpilot.dev/v1alpha1), from its status as the operator
-- writes it: observedGeneration, and the conditions Ready, Stalled and Reconciling (kstatus).
--   Suspended    spec.paused: the operator observes only
--   Degraded     Stalled=True (the spec, a quota or RBAC must change), or no replica ready for a reason that
--                waiting will not fix (ModelLoadFailed, ModelFetchFailed, CrashLoopBackOff, ImagePullFailed,
--                CreateContainerConfigError)
--   Progressing  no status yet, a generation not acted on yet, Reconciling=True (being retried), or no replica
--                ready yet (Starting, Unschedulable: a cluster autoscaler may still add a node)
--   Healthy      at least one replica ready, for the current generation
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local failures = {
  ModelLoadFailed = true,
  ModelFetchFailed = true,
  CrashLoopBackOff = true,
  ImagePullFailed = true,
  CreateContainerConfigError = true,
}

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "spec.paused is true: Batchpilot observes only"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator's first status"
  return hs
end

-- The health `verdict` when condition `kind` is True, with its reason and message; nil otherwise.
local function when_true(kind, verdict)
  local c = condition(status.conditions, kind)
  if c == nil or c.status ~= "True" then
    return nil
  end
  return {status = verdict, message = (c.reason or kind) .. ": " .. (c.message or "")}
end

local stalled = when_true("Stalled", "Degraded")
if stalled ~= nil then
  return stalled
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

local reconciling = when_true("Reconciling", "Progressing")
if reconciling ~= nil then
  return reconciling
end

local ready = condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if failures[ready.reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
