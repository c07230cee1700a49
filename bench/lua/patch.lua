-- PATCH movies with their current version: BENCH_VERSIONS lists "id version" pairs fetched just before the
-- run, each movie is patched at most once per pass, and a 200 answer's new version is remembered.
local movies = {}
for line in io.lines(os.getenv("BENCH_VERSIONS")) do
  local id, version = line:match("(%d+) (%d+)")
  if id then movies[#movies + 1] = {id = id, version = tonumber(version)} end
end
local token = os.getenv("BENCH_TOKEN")
local next_index = 0
local by_id = {}
for _, movie in ipairs(movies) do by_id[movie.id] = movie end

function request()
  next_index = next_index % #movies + 1
  local movie = movies[next_index]
  local body = string.format('{"runtime": %d, "version": %d}', math.random(60, 200), movie.version)
  movie.version = movie.version + 1 -- optimistic: the answer corrects it if needed
  return wrk.format("PATCH", "/api/v1/movies/" .. movie.id .. "/", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  local id, version = body:match('^{"id":(%d+).-"version":(%d+)')
  if id and by_id[id] then by_id[id].version = tonumber(version) end
end
