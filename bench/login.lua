-- wrk script: every request is a login through authsite's JSON API.
-- The body comes from the environment (bench/tools.py sets it), so no password is written here.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_LOGIN_BODY")
wrk.headers["Content-Type"] = "application/json"
