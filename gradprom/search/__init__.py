"""A search or protocol as it runs: the request and its checks (`request`), the driver (`driver`), one study on Ray
Tune (`study`, `searcher`, `schedulers`, `progress`, `recorder`), and the Ray runtime and its nodes (`runtime`,
`nodes`). The part of gradprom that drives Ray: `results` and `analysis` read what it leaves without it."""
