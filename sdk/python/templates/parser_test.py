import unittest

import weir_sdk as weir
from {stem} import {Type}


class Test{Type}(unittest.TestCase):
    def test_parses_good_lines_and_reports_bad_ones(self):
        records = weir.Records([b"Oslo,12.5,1714521600000", b"garbage"], [None, None], [0, 0], [0, 0], [0, 1])
        out = {Type}(weir.Config({})).parse(records)
        self.assertEqual(out.sources, [0])
        self.assertEqual(out.errors[0].index, 1)


if __name__ == "__main__":
    unittest.main()
