"""Rewards of the three roles, the votes and grading beneath them, and failure accounting.

Every reward is a pure batch function of typed inputs joined by item id (reference §5, §13.9),
returning its terms as well as the total. Grading runs in killable worker processes
(`grading.Grader`); outcomes other than correct/wrong are counted in a `FailureLedger`.
"""
