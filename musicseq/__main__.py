from musicseq.cli import main

raise SystemExit(main())
