import sys

from tiktok_pipeline.cli.main import main

sys.exit(main())
