-- Argo CD health of a lifeboat.dev BackupStore: Healthy when the operator's last check reached
-- the storage with the store's credentials, Degraded with the reason when it did not
-- (BucketNotFound, AccessDenied, StorageUnreachable), Progressing until the first check ends.
local hs = { status = "Progressing", message = "waiting for the first check" }
local st = obj.status
if st == nil or st.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and st.observedGeneration ~= nil and st.observedGeneration < generation then
  hs.message = "checking the new settings (generation " .. tostring(generation) .. ")"
  return hs
end
for _, condition in ipairs(st.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message or "reachable"
    elseif condition.status == "False" then
      hs.status = "Degraded"
      hs.message = (condition.reason or "Unreachable") .. ": " .. (condition.message or "")
    else
      hs.message = condition.message or hs.message
    end
  end
end
return hs
