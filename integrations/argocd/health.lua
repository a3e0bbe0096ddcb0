-- Argo CD health check for cutover.io/Migration.
--
-- Install as `resource.customizations.health.cutover.io_Migration` in argocd-cm (see
-- argocd-cm.yaml beside this file and docs/gitops.md). Argo CD calls it with the live object as
-- `obj` and expects a table with `status` (Healthy, Progressing, Degraded, Suspended, Missing,
-- Unknown) and `message`.

local PHASES = {
  Pending = "Progressing",
  Progressing = "Progressing",
  RollingBack = "Progressing",
  Paused = "Suspended",
  RolledBack = "Degraded",
  Failed = "Degraded",
  Succeeded = "Healthy",
}

local function describe(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  if status.rollbackReason ~= nil and status.rollbackReason ~= "" then
    return fallback .. ": " .. status.rollbackReason
  end
  if status.weight ~= nil then
    return fallback .. " (green weight " .. tostring(status.weight) .. "%)"
  end
  return fallback
end

local hs = {}
local status = obj.status

if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Cutover operator to pick up the Migration"
  return hs
end

-- A status written for an older spec says nothing about the one just synced: until the operator
-- has acted on this generation, the sync is still in progress whatever the old phase was.
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Cutover operator to observe generation " .. tostring(generation)
  return hs
end

-- A spec the operator refused while traffic is fine (say, a new green against the blue the last
-- run retired): the cluster does not do what Git says, so the sync is Degraded, with the reason.
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "InvalidSpec" and condition.status == "True" and status.phase == "Succeeded" then
    hs.status = "Degraded"
    hs.message = condition.message
    return hs
  end
end

local mapped = PHASES[status.phase]
if mapped == nil then
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(status.phase)
  return hs
end

hs.status = mapped
hs.message = describe(status, status.phase)
return hs
