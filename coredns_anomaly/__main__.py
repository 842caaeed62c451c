from coredns_anomaly.cli import main

raise SystemExit(main())
