-- Argo CD health of a lifeboat.dev BackupSchedule.
-- Stalled (an invalid schedule or time zone): Degraded. spec.suspend: Suspended. Ready: Healthy,
-- with the last success and the next slot. A failed Backup does not make the schedule unhealthy
-- (the Backup itself is Degraded); a schedule with no success yet says so. A failed restore drill
-- does (Verified False): its backups are not proven restorable.
local hs = { status = "Progressing", message = "waiting for the Lifeboat operator" }
local st = obj.status
if st == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and st.observedGeneration ~= nil and st.observedGeneration < generation then
  hs.message = "the operator has not observed generation " .. tostring(generation) .. " yet"
  return hs
end
local ready, stalled, verified = nil, nil, nil
if st.conditions ~= nil then
  for _, condition in ipairs(st.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Stalled" then
      stalled = condition
    elseif condition.type == "Verified" then
      verified = condition
    end
  end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "suspended: no new Backups until spec.suspend is false"
  return hs
end
if verified ~= nil and verified.status == "False" then
  hs.status = "Degraded"
  hs.message = (verified.reason or "DrillFailed") .. ": " .. (verified.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  local last = st.lastSuccessfulTime or "no successful backup yet"
  hs.message = "last success: " .. last .. "; next: " .. (st.nextScheduleTime or "none")
  if st.lastVerifiedTime ~= nil then
    hs.message = hs.message .. "; last verified: " .. st.lastVerifiedTime
  end
  return hs
end
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
end
return hs
