"""selfheal's benchmark suite: each figure beside an anchor measured in the same run."""
