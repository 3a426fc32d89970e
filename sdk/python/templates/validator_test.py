import unittest

import weir_sdk as weir
from {stem} import {Type}


class Test{Type}(unittest.TestCase):
    def test_negative_fares_are_rejected(self):
        plugin = {Type}(weir.Config({}))
        found = list(plugin.validate(weir.Batch({"fare": [3.0, -1.0, None]})))
        self.assertEqual([v.row for v in found], [1])


if __name__ == "__main__":
    unittest.main()
