import unittest

import weir_sdk as weir
from {stem} import {Type}


class Test{Type}(unittest.TestCase):
    def test_keeps_big_fares(self):
        out = {Type}(weir.Config({})).apply(weir.Batch({"city": ["Oslo", "Lima"], "fare": [5.0, 25.0]}))
        self.assertEqual(out.sources, [1])
        self.assertEqual(out.columns["city"], ["Lima"])


if __name__ == "__main__":
    unittest.main()
