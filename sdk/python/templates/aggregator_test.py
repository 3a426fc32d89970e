import unittest

import weir_sdk as weir
from {stem} import {Type}


class Test{Type}(unittest.TestCase):
    def test_counts_and_sums(self):
        agg = {Type}(weir.Config({}))
        states = agg.fold([agg.create()], weir.Batch({"fare": [3.0, 4.5]}), [0, 0])
        self.assertEqual(agg.emit(states), {"count": [2], "total_fare": [7.5]})


if __name__ == "__main__":
    unittest.main()
