"""The cost of ``bots.user_agents`` per distinct user agent, with many patterns.

``--patterns`` patterns (``(?i)botname00000``...), none of which matches; ``--agents`` distinct user agents
asked about once each (a verdict is kept per distinct value, so this is the cost a new one pays).

    PYTHONPATH=. python bench/bots.py --patterns 10000 --agents 500
"""

from __future__ import annotations

import argparse
import time

from lifestats.bots import BotFilter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=500)
    args = parser.parse_args()
    patterns = [f"(?i)botname{k:05d}" for k in range(args.patterns)]
    start = time.process_time()
    bots = BotFilter([], patterns, known_crawlers=False)
    built = time.process_time() - start
    agents = [f"Mozilla/5.0 (X11; Linux x86_64) agent-{k}" for k in range(args.agents)]
    start = time.process_time()
    hits = sum(bots.is_bot(None, agent) for agent in agents)
    each = (time.process_time() - start) / len(agents)
    print(f"{args.patterns:,} patterns as {len(bots.patterns)} expression(s), built in {built:.2f} s of CPU")
    print(f"{each * 1e3:.3f} ms of CPU per distinct user agent ({hits} bots among {len(agents)})")


if __name__ == "__main__":
    main()
