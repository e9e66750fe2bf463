#!/usr/bin/env python3
"""Write N synthetic experiment records (exposures and conversions, two experiments, 2,000 accounts, 60 days)
as one segment of an `audit` stream, for timing `concierge experiments report` (BENCHMARKS.md).
The lines have the chain's shape (seq, prev; seq counts every line, so `concierge audit ship` takes them) but
not its hashes: the report does not verify, `audit verify` would refuse them.

    python3 bench/experiments_records.py DIR [N] [--with-decisions]   # then: concierge experiments report DIR

With --with-decisions every experiment record is followed by a decision record of realistic size, as in a real
audit stream (the report skips them).
"""
import os
import random
import sys

out_dir = os.path.join(sys.argv[1], "audit")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
with_decisions = "--with-decisions" in sys.argv
DECISION = ('{{"seq":{seq},"prev":"x","type":"decision","time":"{t}","request_id":"d{seq}","client":"h:5f0e3a9d21c4b7e8",'
            '"page":"/","jurisdiction":{{"regime":"opt-out","region":"US-CA"}},"signals":{{"gpc":false,"dnt":false}},'
            '"permitted":["anonymous","firmographic"],"reasons":["opt-out region, no objection"],"banner":false,'
            '"lookup":"matched","company":"{acct}","rules":["{acct}/home-hero"],"rules_version":"c8217e0b36eb73e6",'
            '"outcome":"personalized","experiments":[{{"experiment":"{exp}","arm":"{arm}"}}]}}\n')
os.makedirs(out_dir, exist_ok=True)
rng = random.Random(1)
accounts = [f"account-{i}.example" for i in range(2000)]
arms = {(e, a): ("control" if rng.random() < 0.5 else "treatment") for e in ("q1-hero", "q1-pricing") for a in accounts}
with open(os.path.join(out_dir, "00000000000000000000.jsonl"), "w") as f:
    line = 0
    for i in range(n):
        seq = i
        exp = "q1-hero" if seq % 3 else "q1-pricing"
        acct = accounts[rng.randrange(len(accounts))]
        day = 1 + seq * 59 // n
        t = f"2027-01-{day:02d}T10:00:00.000Z" if day <= 31 else f"2027-02-{day - 31:02d}T10:00:00.000Z"
        arm = arms[(exp, acct)]
        if with_decisions:
            f.write(DECISION.format(seq=line, t=t, acct=acct, exp=exp, arm=arm))
            line += 1
        seq = line
        line += 1
        if rng.random() < 0.05:
            f.write(f'{{"seq":{seq},"prev":"x","type":"conversion","time":"{t}","request_id":"r{seq}","experiment":"{exp}","goal":"demo-request","arm":"{arm}","account":"{acct}","page":"/demo-request","method":"POST"}}\n')
        else:
            f.write(f'{{"seq":{seq},"prev":"x","type":"exposure","time":"{t}","request_id":"r{seq}","experiment":"{exp}","arm":"{arm}","account":"{acct}","page":"/","rules":["{acct}/home-hero"],"rules_version":"c8217e0b36eb73e6","control":0.5}}\n')
