from kobako.cli import main

raise SystemExit(main())
